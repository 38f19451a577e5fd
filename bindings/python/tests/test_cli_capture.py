"""`sae capture` and `sae eval --model` ($SAE_CLI) on stories260K: the captured activations and
the loss recovered against a llama2 forward pass written here in numpy (FORMATS.md, "llama2.c
checkpoint"), the layouts of --hook, --skip-bos, --tokens and --text, and errors. A few seconds
in all (a handful of short sequences, one thread)."""

import json

import numpy as np
import pytest

import sae
from _cli import ok, run

KINDS = ("resid_pre", "attn_out", "mlp_out", "resid_post")
N_SEQ, SEQ_LEN = 6, 20


def expect_error(args, needle, code=1):
    r = run(*args)
    assert r.returncode == code, (args, r.returncode, r.stderr)
    assert r.stderr.startswith("sae: ") and needle in r.stderr, r.stderr


# ---- a numpy llama2 -------------------------------------------------------------------------

class Llama2:
    """stories260K in float64: forward over whole sequences, with a hook on the residual
    stream after a chosen layer."""

    def __init__(self, path):
        raw = np.fromfile(path, dtype=np.uint8)
        dim, hidden, L, n_heads, n_kv, vocab, seq_len = np.frombuffer(raw[:28], np.int32)
        self.dim, self.L, self.n_heads, self.n_kv = int(dim), int(L), int(n_heads), int(n_kv)
        self.hs = self.dim // self.n_heads
        kv_dim = self.dim * self.n_kv // self.n_heads
        w = np.frombuffer(raw[28:], np.float32).astype(np.float64)
        at = 0

        def take(*shape):
            nonlocal at
            n = int(np.prod(shape))
            a = w[at:at + n].reshape(shape)
            at += n
            return a

        V = abs(int(vocab))
        self.emb = take(V, self.dim)
        self.rms_att = take(L, self.dim)
        self.wq, self.wk = take(L, self.dim, self.dim), take(L, kv_dim, self.dim)
        self.wv, self.wo = take(L, kv_dim, self.dim), take(L, self.dim, self.dim)
        self.rms_ffn = take(L, self.dim)
        self.w1, self.w2 = take(L, hidden, self.dim), take(L, self.dim, hidden)
        self.w3 = take(L, hidden, self.dim)
        self.rms_final = take(self.dim)
        take(int(seq_len) * self.hs)  # freq_cis_real, freq_cis_imag: unused
        self.wcls = self.emb if vocab > 0 else take(V, self.dim)

    @staticmethod
    def rmsnorm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * g

    def rope(self, v, T):
        j = np.arange(0, v.shape[-1], 2)
        ang = np.arange(T)[:, None] / 10000.0 ** ((j % self.hs) / self.hs)[None, :]
        c, s = np.cos(ang), np.sin(ang)
        a, b = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
        return out

    def forward(self, tokens, splice=None):
        """Logits (n, T, V) and the activations {kind: (n, T, L, dim)}. splice(x) replaces
        resid_post.2."""
        n, T = tokens.shape
        x = self.emb[tokens]
        acts = {k: np.zeros((n, T, self.L, self.dim)) for k in KINDS}
        mask = np.triu(np.full((T, T), -np.inf), 1)
        group = self.n_heads // self.n_kv
        for l in range(self.L):
            acts["resid_pre"][:, :, l] = x
            h = self.rmsnorm(x, self.rms_att[l])
            q = self.rope(h @ self.wq[l].T, T).reshape(n, T, self.n_heads, self.hs)
            k = self.rope(h @ self.wk[l].T, T).reshape(n, T, self.n_kv, self.hs)
            v = (h @ self.wv[l].T).reshape(n, T, self.n_kv, self.hs)
            k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
            s = np.einsum("nthd,nuhd->nhtu", q, k) / np.sqrt(self.hs) + mask
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            att = np.einsum("nhtu,nuhd->nthd", p, v).reshape(n, T, self.dim) @ self.wo[l].T
            acts["attn_out"][:, :, l] = att
            x = x + att
            h = self.rmsnorm(x, self.rms_ffn[l])
            a = h @ self.w1[l].T
            mlp = (a / (1 + np.exp(-a)) * (h @ self.w3[l].T)) @ self.w2[l].T
            acts["mlp_out"][:, :, l] = mlp
            x = x + mlp
            if splice is not None and l == 2:
                x = splice(x)
            acts["resid_post"][:, :, l] = x
        return self.rmsnorm(x, self.rms_final) @ self.wcls.T, acts


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def ce_and_kl(clean, other, tokens):
    """Mean next-token CE of `other` and mean KL(clean || other) over positions 0..T-2."""
    lp, lq = log_softmax(clean[:, :-1]), log_softmax(other[:, :-1])
    y = tokens[:, 1:]
    ce = -np.take_along_axis(lq, y[..., None], -1).mean()
    return ce, (np.exp(lp) * (lp - lq)).sum(-1).mean()


# ---- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(shared_dir):
    return shared_dir / "data" / "stories260K.bin", shared_dir / "data" / "tok512.bin"


@pytest.fixture(scope="module")
def llama(model):
    return Llama2(model[0])


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """BOS, then random ids; as I32 and I64 token files."""
    rng = np.random.default_rng(1)
    t = rng.integers(3, 512, size=(N_SEQ, SEQ_LEN)).astype(np.int32)
    t[:, 0] = 1
    base = tmp_path_factory.mktemp("tokens")
    sae.save_file({"tokens": t}, base / "t32.safetensors")
    sae.save_file({"ids": t.astype(np.int64)}, base / "t64.safetensors")
    return t, base / "t32.safetensors", base / "t64.safetensors"


def capture(model, tokens_file, out, *extra):
    ok("capture", "--model", model[0], "--tokens", tokens_file, "--out", out, *extra)
    return sae.load_file(out)


# ---- capture --------------------------------------------------------------------------------

def test_capture_all_matches_numpy(model, llama, tokens, tmp_path):
    t, t32, _ = tokens
    got = capture(model, t32, tmp_path / "all.safetensors", "--hook", "all", "--batch-seqs", 4)
    _, want = llama.forward(t)
    assert sorted(got) == sorted(KINDS)
    for kind in KINDS:
        assert got[kind].shape == (N_SEQ, SEQ_LEN, 5, 64) and got[kind].dtype == np.float32
        scale = np.abs(want[kind]).max()
        np.testing.assert_allclose(got[kind], want[kind], atol=2e-5 * scale, rtol=0, err_msg=kind)


def test_capture_layouts(model, tokens, tmp_path):
    t, t32, t64 = tokens
    full = capture(model, t32, tmp_path / "all.safetensors", "--hook", "all")
    # one hook point by its SAELens name, without position 0, from I64 tokens, in batches of 1
    one = capture(model, t64, tmp_path / "one.safetensors", "--hook", "blocks.2.hook_resid_post",
                  "--skip-bos", "--batch-seqs", 1)
    assert list(one) == ["resid_post"]
    np.testing.assert_array_equal(one["resid_post"], full["resid_post"][:, 1:, 2])
    # a kind: every layer of it; --max-seqs keeps the first sequences
    kind = capture(model, t32, tmp_path / "kind.safetensors", "--hook", "mlp_out",
                   "--max-seqs", 2)
    np.testing.assert_array_equal(kind["mlp_out"], full["mlp_out"][:2])
    meta = sae.load_metadata(tmp_path / "kind.safetensors")
    assert meta == {"hooks.mlp_out": ",".join("mlp_out.%d" % l for l in range(5)),
                    "skip_bos": "0"}


def test_capture_text(model, tmp_path):
    text = tmp_path / "stories.txt"
    text.write_text("Once upon a time, there was a little girl named Lily.\n\n"
                    "She loved to play outside in the park. One day, she saw a big, red ball.\n"
                    "She wanted to play with it, but it was too high.\n")
    out = tmp_path / "text.safetensors"
    r = ok("capture", "--model", model[0], "--tokenizer", model[1], "--text", text,
           "--seq-len", 16, "--hook", "resid_post.4", "--out", out)
    got = sae.load_file(out)["resid_post"]
    assert got.shape[1:] == (16, 64) and got.shape[0] >= 2
    assert "%d sequences of 16 tokens" % got.shape[0] in r.stdout and "tokens/s" in r.stdout
    expect_error(["capture", "--model", model[0], "--tokenizer", model[1], "--text", text,
                  "--seq-len", 500, "--hook", "all", "--out", out], "make no sequence")


def test_capture_errors(model, tokens, tmp_path):
    t, t32, _ = tokens
    bad = t.copy()
    bad[3, 7] = 600
    sae.save_file({"tokens": bad}, tmp_path / "bad.safetensors")
    out = tmp_path / "x.safetensors"
    expect_error(["capture", "--model", model[0], "--tokens", tmp_path / "bad.safetensors",
                  "--hook", "all", "--out", out], "token 7 of sequence 3 is 600, outside [0, 512)")
    assert not out.exists()
    expect_error(["capture", "--model", model[0], "--tokens", t32, "--hook", "resid_mid.1",
                  "--out", out], "resid_post.L")
    sae.save_file({"tokens": t.astype(np.float32)}, tmp_path / "float.safetensors")
    expect_error(["capture", "--model", model[0], "--tokens", tmp_path / "float.safetensors",
                  "--hook", "all", "--out", out], "I32 or I64")
    expect_error(["capture", "--model", model[0], "--tokens", t32, "--out", out], "--hook", 2)
    expect_error(["capture", "--model", model[0], "--tokens", t32, "--text", t32,
                  "--tokenizer", model[1], "--hook", "all", "--out", out], "one of", 2)
    expect_error(["capture", "--model", model[0], "--text", t32, "--hook", "all", "--out", out],
                 "--tokenizer", 2)


# ---- eval --model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(model, tokens, tmp_path_factory):
    """A TopK SAE trained briefly on resid_post.2 (without BOS). `sae train` names the hook
    point of the captured file in cfg.json; the test renames it the SAELens way, which eval
    maps back."""
    base = tmp_path_factory.mktemp("trained")
    _, t32, _ = tokens
    acts = base / "acts.safetensors"
    ok("capture", "--model", model[0], "--tokens", t32, "--hook", "resid_post.2", "--skip-bos",
       "--out", acts)
    out = base / "sae"
    ok("train", "--data", acts, "--arch", "topk", "--k", 8, "--d-sae", 128, "--steps", 40,
       "--batch", 32, "--threads", 1, "--out", out)
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "resid_post.2"
    cfg["metadata"]["hook_name"] = "blocks.2.hook_resid_post"
    (out / "cfg.json").write_text(json.dumps(cfg))
    return out


def test_eval_loss_recovered_matches_numpy(model, llama, tokens, trained):
    t, t32, _ = tokens
    r = ok("eval", trained, "--model", model[0], "--tokens", t32, "--json", "--threads", 1,
           "--batch-seqs", 4)
    got = json.loads(r.stdout)
    lr = got["loss_recovered"]
    assert lr["hook"] == "resid_post.2" and lr["predictions"] == N_SEQ * (SEQ_LEN - 1)
    assert got["rows"] == N_SEQ * SEQ_LEN  # the FVU rows: the model's, position 0 included

    clean, acts = llama.forward(t)
    mu = acts["resid_post"][:, :, 2].reshape(-1, 64).mean(0)
    with sae.load(trained, threads=1) as d:
        def splice(x):
            flat = x.reshape(-1, 64).astype(np.float32)
            return d.decode(d.encode(flat)).astype(np.float64).reshape(x.shape)
        runs = {"spliced": splice, "zero_ablated": np.zeros_like,
                "mean_ablated": lambda x: np.broadcast_to(mu, x.shape)}
        want = {"ce_clean": ce_and_kl(clean, clean, t)[0]}
        for name, fn in runs.items():
            want["ce_" + name], want["kl_" + name] = ce_and_kl(clean, llama.forward(t, fn)[0], t)
    for key, value in want.items():
        assert lr[key] == pytest.approx(value, rel=2e-4, abs=2e-5), key
    for abl in ("zero", "mean"):
        assert lr["ce_score_" + abl] == pytest.approx(
            (lr["ce_%s_ablated" % abl] - lr["ce_spliced"]) /
            (lr["ce_%s_ablated" % abl] - lr["ce_clean"]), rel=1e-6)
        assert lr["kl_score_" + abl] == pytest.approx(
            1 - lr["kl_spliced"] / lr["kl_%s_ablated" % abl], rel=1e-6)


def test_eval_text_output_and_hook_choice(model, tokens, trained, tmp_path):
    _, t32, _ = tokens
    r = ok("eval", trained, "--model", model[0], "--tokens", t32, "--hook", "resid_post.3",
           "--skip-bos", "--threads", 1)
    assert "SAE spliced at resid_post.3" in r.stdout and "position 0 left clean" in r.stdout
    assert "CE score" in r.stdout and "KL(clean || spliced)" in r.stdout
    # rows from --data, loss recovered from the model
    acts = tmp_path / "acts.safetensors"
    ok("capture", "--model", model[0], "--tokens", t32, "--hook", "resid_post.2", "--out", acts)
    # a file of every hook point names none: the SAE trained on one of its rows has no hook_name
    every = tmp_path / "every.safetensors"
    ok("capture", "--model", model[0], "--tokens", t32, "--hook", "resid_post", "--out", every)
    ok("train", "--data", every, "--arch", "topk", "--k", 4, "--d-sae", 32, "--steps", 2,
       "--batch", 16, "--threads", 1, "--out", tmp_path / "unnamed")
    assert "hook_name" not in json.loads((tmp_path / "unnamed" / "cfg.json").read_text()).get(
        "metadata", {})
    got = json.loads(ok("eval", trained, "--data", acts, "--model", model[0], "--tokens", t32,
                        "--json", "--threads", 1).stdout)
    assert got["data"] == str(acts) and "loss_recovered" in got
    # a hook_name the model does not have, and none at all
    cfg = json.loads((trained / "cfg.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sae_weights.safetensors").write_bytes(
        (trained / "sae_weights.safetensors").read_bytes())
    cfg["metadata"]["hook_name"] = "blocks.9.hook_resid_post"
    (broken / "cfg.json").write_text(json.dumps(cfg))
    expect_error(["eval", broken, "--model", model[0], "--tokens", t32],
                 "'blocks.9.hook_resid_post' is not a hook point")
    del cfg["metadata"]["hook_name"]
    (broken / "cfg.json").write_text(json.dumps(cfg))
    expect_error(["eval", broken, "--model", model[0], "--tokens", t32], "give --hook")
    expect_error(["eval", trained, "--hook", "resid_post.2", "--data", acts], "--model", 2)
