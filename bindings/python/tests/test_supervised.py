"""sae.Supervised and the Makelov metrics against numpy, and `sae evaluate-task` on the
stories260K pronoun task: the committed task file is what the generator writes, and editing the
name with the supervised dictionary makes the model switch to the other pronoun."""

import importlib.util
import json
import os
import subprocess

import numpy as np
import pytest

import sae
from _shared import REPO

CLI = os.environ.get("SAE_CLI")
N_VALUES = [4, 3]


def dataset(seed=0, n=60, d=5):
    rng = np.random.default_rng(seed)
    labels = np.stack([rng.integers(0, 4, n), rng.integers(0, 3, n)], axis=1)
    table = rng.normal(size=(7, d))
    x = rng.normal(size=d) + table[labels[:, 0]] + table[4 + labels[:, 1]]
    return (x + 0.3 * rng.normal(size=(n, d))).astype(np.float32), labels


def design(labels):
    return np.concatenate([np.ones((len(labels), 1)), np.eye(4)[labels[:, 0]],
                           np.eye(3)[labels[:, 1]]], axis=1)


def test_mean_codes_are_conditional_means():
    x, labels = dataset()
    with sae.Supervised(x, labels, N_VALUES) as sup:
        np.testing.assert_allclose(sup.bias, x.mean(0), atol=1e-5)
        for a, nv in enumerate(N_VALUES):
            for v in range(nv):
                want = x[labels[:, a] == v].mean(0) - x.mean(0)
                np.testing.assert_allclose(sup.codes[sup.code_index(a, v)], want, atol=1e-5)
        assert sup.weights(labels).sum(1) == pytest.approx(np.ones(len(x)), abs=1e-5)


def test_lstsq_fits_like_numpy():
    x, labels = dataset(1)
    fitted = design(labels) @ np.linalg.lstsq(design(labels), x.astype(np.float64),
                                              rcond=None)[0]
    with sae.Supervised(x, labels, N_VALUES, method="lstsq") as sup:
        np.testing.assert_allclose(sup.reconstruct(labels), fitted, atol=1e-4)
        np.testing.assert_allclose(sup.bias, x.mean(0), atol=1e-4)


def test_edit_and_dictionary():
    x, labels = dataset(2)
    with sae.Supervised(x, labels, N_VALUES) as sup:
        moved = labels.copy()
        moved[:, 1] = (labels[:, 1] + 1) % 3
        edited = sup.edit(x, 1, labels[:, 1], moved[:, 1])
        np.testing.assert_allclose(edited - x, sup.reconstruct(moved) - sup.reconstruct(labels),
                                   atol=1e-5)
        with sup.to_dictionary() as d:
            assert (d.d_in, d.d_sae) == (5, 7)
            np.testing.assert_array_equal(d.W_dec, sup.codes)
    with pytest.raises(sae.SaeError):
        sae.Supervised(x, labels, [2, 3])


def test_f1_against_numpy():
    rng = np.random.default_rng(3)
    x, labels = dataset(3)
    codes = np.maximum(rng.normal(size=(len(x), 9)), 0).astype(np.float32)
    p, r, f1 = sae.feature_f1(codes, labels, N_VALUES)
    fires = codes > 0
    for a, nv in enumerate(N_VALUES):
        for v in range(nv):
            mask = labels[:, a] == v
            tp = (fires & mask[:, None]).sum(0)
            c = sum(N_VALUES[:a]) + v
            np.testing.assert_allclose(p[c], tp / fires.sum(0), atol=1e-6)
            np.testing.assert_allclose(r[c], tp / mask.sum(), atol=1e-6)
    ids, vals = sae.f1_top(f1, 2)
    np.testing.assert_array_equal(vals[:, 0], f1.max(1))
    np.testing.assert_array_equal(ids[:, 0], f1.argmax(1))


def test_exchange_with_axis_features():
    eye = np.eye(4, dtype=np.float32)
    with sae.Dictionary.from_arrays("standard", W_enc=eye, W_dec=eye) as d:
        a = np.array([[1, 0, 2, 0]], np.float32)
        a_cf = np.array([[0, 3, 0, 0]], np.float32)
        out, removed = sae.feature_exchange(d, a, a_cf, method="greedy", n_exchange=8)
        np.testing.assert_allclose(out, a_cf, atol=1e-6)
        assert removed[0] == pytest.approx(1.0)
        out, removed = sae.feature_exchange(d, a, a_cf, "f1", 1, f1_from=[0.9, 0, 0.1, 0],
                                            f1_to=[0, 1, 0, 0])
        np.testing.assert_allclose(out, [[0, 3, 2, 0]], atol=1e-6)
        np.testing.assert_allclose(sae.feature_weights(d, a), [[0.2, 0, 0.8, 0]], atol=1e-6)


def generator():
    spec = importlib.util.spec_from_file_location("make_stories_task",
                                                  REPO / "scripts" / "make_stories_task.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_task_file_is_generated():
    committed = json.loads((REPO / "examples" / "tasks" / "stories260K-pronoun.json").read_text())
    assert committed == generator().build()


def test_supervised_edit_moves_the_pronoun(shared_dir, tmp_path):
    """A subset of the task (4 names, 3 templates) keeps the run to a few seconds."""
    assert CLI, "set SAE_CLI to the built `sae` tool"
    task = generator().build()
    keep_names = {"Lily", "Anna", "Tom", "Ben"}
    keep = [i for i, p in enumerate(task["prompts"])
            if p["labels"]["name"] in keep_names and p["labels"]["template"] in ("t0", "t2", "t7")]
    index = {old: new for new, old in enumerate(keep)}
    task["prompts"] = [task["prompts"][i] for i in keep]
    task["pairs"] = [dict(p, base=index[p["base"]], counterfactual=index[p["counterfactual"]])
                     for p in task["pairs"] if p["base"] in index and p["counterfactual"] in index]
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task))
    data = shared_dir / "data"
    out = subprocess.run([CLI, "evaluate-task", "--model", str(data / "stories260K.bin"),
                          "--tokenizer", str(data / "tok512.bin"), "--task", str(path), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["prompts"] == 12 and result["pairs"] > 0
    assert result["clean"]["accuracy"] == 1.0
    assert result["pair_baselines"]["success_unedited"] == 0.0
    for col in result["dictionaries"]:
        assert col["kind"] == "supervised"
        assert col["control"]["success"] >= 0.9, col
        assert col["approximation"]["sufficiency"] > 0.8, col


@pytest.mark.parametrize("change, message", [
    (lambda t: t["prompts"][0].update(answer="she said"), "one token"),
    (lambda t: t["prompts"][1]["labels"].update(name="Nobody"), "labels.name"),
    (lambda t: t["pairs"][0].update(counterfactual=t["pairs"][0]["base"]), "must differ"),
    (lambda t: t["attributes"][1].update(dictionary=True) or t["pairs"][0].update(
        attribute="template"), "must differ"),
    (lambda t: t.pop("hook"), "no hook point"),
])
def test_bad_task_files(shared_dir, tmp_path, change, message):
    assert CLI, "set SAE_CLI to the built `sae` tool"
    task = generator().build()
    change(task)
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task))
    data = shared_dir / "data"
    out = subprocess.run([CLI, "evaluate-task", "--model", str(data / "stories260K.bin"),
                          "--tokenizer", str(data / "tok512.bin"), "--task", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and message in out.stderr and out.stderr.count("\n") == 1, \
        out.stderr


# ---- prompt runs through a host (numpy ToyHost of test_host.py) --------------------------------

def _toy_prompts():
    from test_host import T, V
    rng = np.random.default_rng(7)
    prompts = [rng.integers(0, V, size=rng.integers(2, T + 1)) for _ in range(9)]
    answer, wrong = rng.integers(0, V, size=9), rng.integers(0, V, size=9)
    return prompts, answer, wrong


def _direct(host, prompt, answer, wrong, name, replace=None):
    """logit(answer) - logit(wrong) at the last position and the node, in numpy."""
    seen = {}

    def hook(n, x):
        if n == name:
            seen["a"] = np.array(x[0, -1], np.float64)
            if replace is not None:
                x = np.array(x, np.float64)
                x[0, -1] = replace
        return x
    logits = host.forward(np.asarray(prompt)[None, :], hook)
    return logits[0, -1, answer] - logits[0, -1, wrong], seen["a"]


def test_prompts_run_matches_numpy():
    from test_host import ToyHost
    host = ToyHost()
    prompts, answer, wrong = _toy_prompts()
    diffs, acts = sae.prompts_run(host, "resid_post.0", prompts, answer, wrong)
    for p in range(len(prompts)):
        want_diff, want_act = _direct(host, prompts[p], answer[p], wrong[p], "resid_post.0")
        np.testing.assert_allclose(diffs[p], want_diff, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(acts[p], want_act, rtol=1e-5, atol=1e-5)
    replace = np.random.default_rng(3).normal(size=acts.shape).astype(np.float32)
    diffs2, acts2 = sae.prompts_run(host, "resid_post.0", prompts, answer, wrong, replace)
    np.testing.assert_array_equal(acts2, acts)  # recorded as they arrived
    for p in range(len(prompts)):
        want_diff, _ = _direct(host, prompts[p], answer[p], wrong[p], "resid_post.0", replace[p])
        np.testing.assert_allclose(diffs2[p], want_diff, rtol=1e-4, atol=1e-4)


def test_prompts_approximation_known_answers():
    from test_host import ToyHost
    host = ToyHost()
    prompts, answer, wrong = _toy_prompts()
    diffs, acts = sae.prompts_run(host, "resid_post.1", prompts, answer, wrong)
    exact = sae.prompts_approximation(host, "resid_post.1", prompts, answer, wrong, acts, acts)
    assert exact["clean"] == pytest.approx(float(np.mean(diffs.astype(np.float64))), abs=1e-4)
    assert exact["sufficiency"] == pytest.approx(1.0, abs=1e-4)  # â = a
    assert exact["necessity"] == pytest.approx(0.0, abs=1e-4)    # a - a + E[a] = E[a]
    mean = np.repeat(acts.mean(axis=0, keepdims=True), len(prompts), axis=0)
    ablated = sae.prompts_approximation(host, "resid_post.1", prompts, answer, wrong, acts, mean)
    assert ablated["sufficiency"] == pytest.approx(0.0, abs=1e-3)  # â = E[a]
    assert ablated["necessity"] == pytest.approx(1.0, abs=1e-3)    # a - E[a] + E[a] = a
    with pytest.raises(ValueError):
        sae.prompts_approximation(host, "resid_post.1", prompts, answer, wrong, acts, acts[:3])
    with pytest.raises(ValueError):
        sae.prompts_run(host, "resid_post.1", prompts, answer[:2], wrong)
    with pytest.raises(sae.SaeError):
        sae.prompts_run(host, "no_such_hook", prompts, answer, wrong)
