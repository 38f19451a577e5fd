"""A float64 numpy reference of the encode/decode formulas in include/sae/dict.h and encoder.h.

x_n = norm_in(x); x' = x_n - b_dec (if apply_b_dec_to_input); pre = x' W_enc + b_enc;
f = act(pre) (with pre * ||d_j|| first when rescale_acts_by_decoder_norm);
x_hat = norm_out((f / ||d_j|| if rescaled) W_dec + b_dec).
"""

import numpy as np


class Reference:
    """The same parameters as Dictionary.from_arrays, computed in float64."""

    def __init__(self, arch="standard", *, W_enc, b_enc=None, W_dec, b_dec=None, k=None,
                 threshold=None, b_gate=None, b_mag=None, r_mag=None,
                 apply_b_dec_to_input=True, relu_before_topk=False,
                 rescale_acts_by_decoder_norm=False, input_norm="none", act_scale=None, **_):
        f64 = lambda a, n: np.zeros(n) if a is None else np.asarray(a, np.float64)
        self.arch = arch
        self.W_enc = np.asarray(W_enc, np.float64)
        self.d_in, self.d_sae = self.W_enc.shape
        self.W_dec = np.asarray(W_dec, np.float64)
        self.b_enc = f64(b_enc, self.d_sae)
        self.b_dec = f64(b_dec, self.d_in)
        self.threshold = f64(threshold, self.d_sae)
        self.b_gate = f64(b_gate, self.d_sae)
        self.b_mag = f64(b_mag, self.d_sae)
        self.r_mag = f64(r_mag, self.d_sae)
        self.k = k
        self.apply_b_dec = apply_b_dec_to_input
        self.relu_first = relu_before_topk
        self.rescale = rescale_acts_by_decoder_norm
        self.input_norm = input_norm
        self.act_scale = 1.0 if not act_scale else float(act_scale)
        self.norms = np.linalg.norm(self.W_dec, axis=1)

    # Input normalisation: returns the normalised rows and a function that undoes it.
    def _norm(self, x):
        if self.input_norm == "none":
            return x, lambda y: y
        if self.input_norm == "scale":
            s = self.act_scale
            return x * s, lambda y: y / s
        if self.input_norm == "constant_rescale":
            factor = np.sqrt(self.d_in) / np.linalg.norm(x, axis=1, keepdims=True)
            return x * factor, lambda y: y / factor
        if self.input_norm == "layer_norm":
            mu = x.mean(axis=1, keepdims=True)
            std = x.std(axis=1, ddof=1, keepdims=True)  # unbiased
            return (x - mu) / (std + 1e-5), lambda y: y * std + mu
        raise ValueError(self.input_norm)

    def forward(self, x):
        """(f, pre, x_hat, margin) for x (n, d_in); margin is the smallest distance of any
        discrete decision (ReLU, gate, threshold, top-k boundary) from a tie."""
        x = np.asarray(x, np.float64)
        xn, denorm = self._norm(x)
        xp = xn - self.b_dec if self.apply_b_dec else xn
        margins = []
        if self.arch == "gated":
            xe = xp @ self.W_enc
            gate = xe + self.b_gate
            pre = xe * np.exp(self.r_mag) + self.b_mag  # the magnitude pre-activation
            p = pre * self.norms if self.rescale else pre
            f = (gate > 0) * np.maximum(p, 0)
            margins += [np.abs(gate).min(), np.abs(p).min()]
        else:
            pre = xp @ self.W_enc + self.b_enc
            p = pre * self.norms if self.rescale else pre
            if self.arch == "standard":
                f = np.maximum(p, 0)
                margins.append(np.abs(p).min())
            elif self.arch == "topk":
                sel = np.maximum(p, 0) if self.relu_first else p
                order = np.argsort(-sel, axis=1)
                keep = order[:, :self.k]
                f = np.zeros_like(p)
                rows = np.arange(len(p))[:, None]
                f[rows, keep] = np.maximum(p[rows, keep], 0)
                s = np.take_along_axis(sel, order, axis=1)
                kth, nxt = s[:, self.k - 1], s[:, self.k]
                # A tie at the boundary matters only when the k-th value survives the ReLU.
                gap = np.where(kth > 0, kth - nxt, np.inf)
                margins += [gap.min(), np.abs(p).min()]
            elif self.arch in ("jumprelu", "batchtopk"):
                f = np.where(p > self.threshold, np.maximum(p, 0), 0.0)
                margins += [np.abs(p - self.threshold).min(), np.abs(p).min()]
            else:
                raise ValueError(self.arch)
        x_hat = denorm(self.decode_raw(f))
        return f, pre, x_hat, min(margins)

    def decode_raw(self, f):
        """f W_dec + b_dec before the output normalisation."""
        g = f / self.norms if self.rescale else f
        return g @ self.W_dec + self.b_dec
