"""sae-icm's orthogonality penalty and fine-tuning recipe in sae.Trainer (``preset="sae_icm"``,
``ortho_lambda``, ``ortho_subset``, ``weight_decay``; trainer.h).

sae-icm publishes no fine-tuning steps to compare with (../shared/oracle has its penalty and
forward only), so the recipe is written out here in torch from REFERENCE.md 2.1: its TopKSAE
forward, ``mean ||x_hat - x|| / (||x|| + 1e-8) + lambda * tril(D^T D, -1).square().sum()``,
autograd, ``clip_grad_norm_(1)``, ``torch.optim.AdamW(betas=(0.9, 0.95), weight_decay=0.01)``
over every parameter and transformers' cosine schedule with warm-up; libsae's steps must
follow it."""

import math

import numpy as np
import pytest

import sae

D_IN, D_SAE, K = 12, 32, 4


def weights(seed=0):
    rng = np.random.default_rng(seed)
    return dict(W_enc=rng.normal(0, 0.3, (D_IN, D_SAE)), b_enc=rng.normal(0, 0.1, D_SAE),
                W_dec=rng.normal(0, 0.3, (D_SAE, D_IN)), b_dec=rng.normal(0, 0.2, D_IN))


def batches(steps, n=48, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, D_IN)) + 0.5).astype(np.float32) for _ in range(steps)]


def hf_cosine(step, warmup, total):
    """transformers.get_cosine_schedule_with_warmup's multiplier (num_cycles = 0.5)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


def torch_finetune(w, xs, lam, lr, warmup, total):
    """sae-icm's fine-tuning steps in torch; returns the final weights and per-step
    (loss, penalty)."""
    torch = pytest.importorskip("torch")
    p = {name: torch.tensor(value, dtype=torch.float32, requires_grad=True)
         for name, value in w.items()}
    params = [p["W_enc"], p["b_enc"], p["W_dec"], p["b_dec"]]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: hf_cosine(s, warmup, total))
    trace = []
    for x in xs:
        x = torch.from_numpy(x)
        pre = torch.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])  # TopKSAE: relu, topk
        top = pre.topk(K, dim=-1, sorted=False)
        z = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
        x_hat = z @ p["W_dec"] + p["b_dec"]
        recon = (torch.norm(x_hat - x, dim=-1) / (torch.norm(x, dim=-1) + 1e-8)).mean()
        D = p["W_dec"].T  # nn.Linear layout (d_model, d_sae): columns are the directions
        ortho = torch.tril(D.T @ D, diagonal=-1).square().sum()
        loss = recon + lam * ortho
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        trace.append((loss.item(), ortho.item()))
    return {name: t.detach().numpy().astype(np.float64) for name, t in p.items()}, trace


@pytest.mark.parametrize("lam", [0.0, 0.02])
def test_sae_icm_steps_follow_torch(lam):
    total, warmup, lr, steps = 10, 3, 1e-2, 6
    w, xs = weights(), batches(steps)
    want, trace = torch_finetune(w, xs, lam, lr, warmup, total)
    with sae.Dictionary.from_arrays("topk", k=K, **w) as init, \
            sae.Trainer(dictionary=init, preset="sae_icm", total_steps=total,
                        warmup_steps=warmup, lr=lr, ortho_lambda=lam, ortho_subset=-1,
                        threads=1) as t:
        assert t.options()["ortho_lambda"] == lam and t.options()["weight_decay"] == 0.01
        for s, x in enumerate(xs):
            m = t.step(x)
            loss, ortho = trace[s]
            assert m.lr == pytest.approx(lr * hf_cosine(s, warmup, total), rel=1e-12, abs=0)
            assert m.loss == pytest.approx(loss, rel=2e-5)
            assert m.ortho == (pytest.approx(ortho, rel=2e-5) if lam else 0.0)
            assert m.loss == pytest.approx(m.mse + lam * m.ortho, rel=1e-12)
        with t.dictionary() as d:
            got = {name: np.array(getattr(d, name), np.float64) for name in want}
    moved = 0.0
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=2e-6, err_msg=name)
        moved = max(moved, np.abs(want[name] - w[name]).max())
    assert moved > 1e-3  # the steps did move the weights


def test_ortho_options_and_metrics():
    x = batches(1, n=64)[0]
    with sae.Trainer("topk", D_IN, D_SAE, K, seed=3, threads=1) as plain:
        o = plain.options()
        assert o["ortho_lambda"] == 0 and o["weight_decay"] == 0 and o["ortho_subset"] == 1024
        assert plain.step(x).ortho == 0.0
    with sae.Trainer("topk", D_IN, D_SAE, K, seed=3, threads=1, ortho_lambda=0.5,
                     ortho_subset=8, weight_decay=0.1, mse="relative_l2") as t:
        o = t.options()
        assert (o["ortho_lambda"], o["ortho_subset"], o["weight_decay"], o["mse"]) == \
            (0.5, 8, 0.1, "relative_l2")
        m = t.step(x)
        assert m.ortho > 0 and m.loss == pytest.approx(m.mse + m.aux + 0.5 * m.ortho, rel=1e-12)
        again = sae.Trainer(**o)  # the resolved options round-trip
        assert again.options() == o
        again.close()
    # ortho_lambda=0 is an explicit zero, also under the sae_icm preset (whose value is 1e-4)
    with sae.Trainer("topk", D_IN, D_SAE, K, preset="sae_icm", total_steps=300) as t:
        assert t.options()["ortho_lambda"] == 1e-4 and t.options()["mse"] == "relative_l2"
    with sae.Trainer("topk", D_IN, D_SAE, K, preset="sae_icm", total_steps=300,
                     ortho_lambda=0) as t:
        assert t.options()["ortho_lambda"] == 0 and t.step(x).ortho == 0.0
    with pytest.raises(ValueError, match="negative"):
        sae.Trainer("topk", D_IN, D_SAE, K, ortho_lambda=-1.0)
    with pytest.raises(sae.SaeError, match="total_steps"):  # the recipe's cosine needs it
        sae.Trainer("topk", D_IN, D_SAE, K, preset="sae_icm")


def test_penalty_is_minimised():
    """Fine-tuning with the penalty lowers it (numpy on the exported decoder) far below the
    run without. (On raw rows with a free decoder it does so mostly by shrinking the rows, the
    encoder growing to compensate: sae-icm normalises nothing.)"""
    def penalty(d):
        w = np.array(d.W_dec, np.float64)
        return np.tril(w @ w.T, -1).__pow__(2).sum()

    xs = batches(60, n=64, seed=4)
    result = {}
    for lam in (0.0, 0.5):
        with sae.Dictionary.from_arrays("topk", k=K, **weights(2)) as init, \
                sae.Trainer(dictionary=init, preset="sae_icm", total_steps=60, warmup_steps=5,
                            lr=1e-2, ortho_lambda=lam, ortho_subset=16, threads=1) as t:
            before = penalty(init)
            for x in xs:
                t.step(x)
            with t.dictionary() as d:
                result[lam] = penalty(d)
    assert result[0.5] < 0.2 * result[0.0] and result[0.5] < 0.2 * before, (before, result)
