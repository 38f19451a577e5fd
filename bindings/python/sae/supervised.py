"""Supervised dictionaries and the Makelov, Lange & Nanda metrics (supervised.h).

A :class:`Supervised` dictionary is built from activations and attribute labels: a bias and one
code vector per attribute value, by conditional means (``method="mean"``) or exact least squares
(``"lstsq"``). The functions judge any SAE on the same labels: :func:`feature_f1` and
:func:`f1_top` (interpretability), :func:`feature_weights` and :func:`feature_exchange`
(control: edits by exchanging features, and the weight they remove)::

    sup = sae.Supervised(acts, labels, n_values=[20, 8], method="lstsq")
    edited = sup.edit(acts, attribute=0, old=labels[:, 0], new=other_names)
    precision, recall, f1 = sae.feature_f1(d.encode(acts), labels, n_values=[20, 8])
"""

import numpy as np

from . import _arrays, _structs
from ._lib import lib, new_handle
from .dictionary import Dictionary
from ._handle import NativeHandle

_METHODS = {"mean": 0, "lstsq": 1}
_EXCHANGE = {"f1": 0, "greedy": 1}


def _labels(labels, n_attrs=None):
    """Labels as a C-contiguous int32 (n, n_attrs) array."""
    a = np.asarray(labels)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or (n_attrs is not None and a.shape[1] != n_attrs):
        raise ValueError("labels have shape %s, expected (n, %s)"
                         % (a.shape, n_attrs if n_attrs is not None else "n_attributes"))
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError("labels have dtype %s; expected integers" % a.dtype)
    return np.ascontiguousarray(a, dtype=np.int32)


def _n_values(n_values, labels):
    """n_values as int32 (n_attrs,), by default one more than the largest label per column."""
    if n_values is None:
        n_values = labels.max(axis=0) + 1 if labels.shape[0] else np.ones(labels.shape[1])
    nv = np.ascontiguousarray(n_values, dtype=np.int32).reshape(-1)
    if nv.shape[0] != labels.shape[1]:
        raise ValueError("n_values has %d entries for %d attributes" % (nv.shape[0],
                                                                         labels.shape[1]))
    return nv


class Supervised(NativeHandle):
    """A supervised dictionary (Makelov et al. §2.3): ``bias`` (d,) and ``codes``
    (n_codes, d), row :meth:`code_index` (attribute, value) = u_{A,v}.

    ``x`` is (n, d) activations, ``labels`` (n, n_attributes) integer values, ``n_values`` the
    number of values of each attribute (default: the largest label + 1). Immutable; owns its
    C handle (``close`` or a ``with`` block frees it early).
    """

    def __init__(self, x, labels, n_values=None, method="mean"):
        if method not in _METHODS:
            raise ValueError("method must be one of %s" % sorted(_METHODS))
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError("x has shape %s, expected (n, d)" % (x.shape,))
        rows, ld, _ = _arrays.as_rows(x, x.shape[1], "x")
        lab = _labels(labels)
        nv = _n_values(n_values, lab)
        opts = _structs.new(_structs.SupervisedOptions, method=_METHODS[method])
        handle = new_handle()
        lib.sae_supervised_create(handle, _arrays.address(rows), rows.shape[0], x.shape[1], ld,
                                  _arrays.address(lab), lab.shape[1], lab.shape[1],
                                  _arrays.address(nv), opts)
        self._handle = handle.value
        self.method = method
        self.d = int(lib.sae_supervised_d(self._handle))
        self.n_attributes = int(lib.sae_supervised_n_attributes(self._handle))
        self.n_values = [int(lib.sae_supervised_n_values(self._handle, a))
                         for a in range(self.n_attributes)]
        self.n_codes = int(lib.sae_supervised_n_codes(self._handle))
        self.bias = _arrays.copy_from(lib.sae_supervised_bias(self._handle), self.d,
                                      np.float32)
        self.codes = _arrays.copy_from(lib.sae_supervised_codes(self._handle),
                                       self.n_codes * self.d, np.float32).reshape(
                                           self.n_codes, self.d)

    def _release(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            lib.sae_supervised_free(handle)

    def _live(self):
        if not self._handle:
            raise ValueError("the supervised dictionary is closed")
        return self._handle

    def code_index(self, attribute, value):
        """Row of ``codes`` for (attribute, value); ValueError when out of range."""
        c = lib.sae_supervised_code_index(self._live(), int(attribute), int(value))
        if c < 0:
            raise ValueError("no code for attribute %d value %d" % (attribute, value))
        return int(c)

    def reconstruct(self, labels):
        """(n, d) reconstructions bias + sum_A u_{A, labels[i, A]}."""
        lab = _labels(labels, self.n_attributes)
        out = np.empty((lab.shape[0], self.d), np.float32)
        lib.sae_supervised_reconstruct(self._live(), _arrays.address(out), self.d,
                                       _arrays.address(lab), lab.shape[1], lab.shape[0])
        return out

    def edit(self, x, attribute, old, new):
        """A copy of ``x`` (n, d) with ``attribute`` changed from ``old`` to ``new`` (per row,
        or one value for all rows): x - u_{A,old} + u_{A,new}."""
        out = np.array(x, dtype=np.float32, order="C", ndmin=2, copy=True)
        if out.ndim != 2 or out.shape[1] != self.d:
            raise ValueError("x has shape %s, expected (n, %d)" % (np.shape(x), self.d))
        n = out.shape[0]
        old = np.ascontiguousarray(np.broadcast_to(old, (n,)), dtype=np.int32)
        new = np.ascontiguousarray(np.broadcast_to(new, (n,)), dtype=np.int32)
        lib.sae_supervised_edit(self._live(), _arrays.address(out), self.d, n, int(attribute),
                                _arrays.address(old), _arrays.address(new))
        return out

    def weights(self, labels):
        """(n, n_attributes) weight of each attribute's code in the reconstruction."""
        lab = _labels(labels, self.n_attributes)
        out = np.empty((lab.shape[0], self.n_attributes), np.float32)
        lib.sae_supervised_weights(self._live(), _arrays.address(out), self.n_attributes,
                                   _arrays.address(lab), lab.shape[1], lab.shape[0])
        return out

    def to_dictionary(self):
        """The dictionary as a decoder-only :class:`sae.Dictionary` (W_dec = codes, b_dec =
        bias, zero encoder), e.g. for steering or saving."""
        handle = new_handle()
        lib.sae_supervised_to_dict(self._live(), handle, None)
        return Dictionary(handle)


def feature_f1(codes, labels, n_values=None):
    """Precision, recall and F1 of every feature's firing (code > 0) against every attribute
    value: three (n_codes, d_sae) arrays, row ``c(A, v)`` as in :meth:`Supervised.code_index`.
    """
    f = np.ascontiguousarray(codes, dtype=np.float32)
    if f.ndim != 2:
        raise ValueError("codes have shape %s, expected (n, d_sae)" % (f.shape,))
    lab = _labels(labels)
    nv = _n_values(n_values, lab)
    n_codes, d_sae = int(nv.sum()), f.shape[1]
    p, r, f1 = (np.empty((n_codes, d_sae), np.float32) for _ in range(3))
    lib.sae_feature_f1(_arrays.address(p), _arrays.address(r), _arrays.address(f1), d_sae,
                       _arrays.address(f), d_sae, f.shape[0], d_sae, _arrays.address(lab),
                       lab.shape[1], lab.shape[1], _arrays.address(nv), None)
    return p, r, f1


def f1_top(f1, k):
    """The ``k`` features of highest F1 per row of ``f1``: (ids, values), each (n_codes, k)."""
    t = np.ascontiguousarray(f1, dtype=np.float32)
    ids = np.empty((t.shape[0], k), np.int32)
    vals = np.empty((t.shape[0], k), np.float32)
    lib.sae_feature_f1_top(_arrays.address(ids), _arrays.address(vals), k, _arrays.address(t),
                           t.shape[1], t.shape[0], t.shape[1], k)
    return ids, vals


def feature_weights(dictionary, codes):
    """(n, d_sae) weight of each feature in the reconstruction; rows sum to 1."""
    f = np.ascontiguousarray(codes, dtype=np.float32).reshape(-1, dictionary.d_sae)
    w = np.empty_like(f)
    lib.sae_feature_weights(_arrays.address(w), dictionary.d_sae, dictionary._live(),
                            _arrays.address(f), dictionary.d_sae, f.shape[0])
    return w


def feature_exchange(dictionary, a, a_cf, method="f1", n_exchange=2, f1_from=None,
                     f1_to=None):
    """Edit activations ``a`` (n, d_in) towards ``a_cf`` by exchanging SAE features.

    ``method="f1"`` removes the ``n_exchange`` active features of highest ``f1_from`` (n, d_sae)
    and inserts those of ``a_cf`` of highest ``f1_to``; ``"greedy"`` takes ``n_exchange``
    greedy steps towards a_cf - a. Returns (edited (n, d_in), weight removed (n,)).
    """
    if method not in _EXCHANGE:
        raise ValueError("method must be one of %s" % sorted(_EXCHANGE))
    d, F = dictionary.d_in, dictionary.d_sae
    x = np.ascontiguousarray(a, dtype=np.float32).reshape(-1, d)
    xc = np.ascontiguousarray(a_cf, dtype=np.float32).reshape(-1, d)
    if xc.shape != x.shape:
        raise ValueError("a and a_cf have shapes %s and %s" % (x.shape, xc.shape))
    n = x.shape[0]
    ff = ft = None
    if method == "f1":
        if f1_from is None or f1_to is None:
            raise ValueError("method 'f1' needs f1_from and f1_to")
        ff = np.ascontiguousarray(np.broadcast_to(f1_from, (n, F)), dtype=np.float32)
        ft = np.ascontiguousarray(np.broadcast_to(f1_to, (n, F)), dtype=np.float32)
    out = np.empty_like(x)
    removed = np.empty(n, np.float32)
    lib.sae_feature_exchange(_arrays.address(out), d, _arrays.address(removed),
                             dictionary._live(), _arrays.address(x), d, _arrays.address(xc), d,
                             n, _EXCHANGE[method], int(n_exchange), _arrays.address(ff),
                             _arrays.address(ft), F)
    return out, removed


# ---- runs of a task's prompts through a host (sae_prompts_run, sae_prompts_approximation) ------

def _prompt_set(host, hook, prompts, answer, wrong):
    """The ``sae_prompts`` struct of ``prompts`` and the arrays it points into (keep them)."""
    from . import _host_structs
    from .source import _hook_id
    seqs = [np.asarray(p, dtype=np.int32).ravel() for p in prompts]
    if not seqs:
        raise ValueError("no prompts")
    offsets = np.zeros(len(seqs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    tokens = np.ascontiguousarray(np.concatenate(seqs), dtype=np.int32)
    answer = np.ascontiguousarray(answer, dtype=np.int32).ravel()
    wrong = np.ascontiguousarray(wrong, dtype=np.int32).ravel()
    if answer.shape != (len(seqs),) or wrong.shape != (len(seqs),):
        raise ValueError("answer and wrong need one token per prompt (%d), got %s and %s"
                         % (len(seqs), answer.shape, wrong.shape))
    struct = _structs.new(_host_structs.Prompts, hook_id=_hook_id(host, hook),
                          n_prompts=len(seqs), tokens=tokens.ctypes.data,
                          offsets=offsets.ctypes.data, answer=answer.ctypes.data,
                          wrong=wrong.ctypes.data)
    return struct, (tokens, offsets, answer, wrong)


def _node_rows(name, rows, n, d):
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if rows.shape != (n, d):
        raise ValueError("%s must be (n_prompts, d_model) = (%d, %d), got %s"
                         % (name, n, d, rows.shape))
    return rows


def prompts_run(host, hook, prompts, answer, wrong, replace=None):
    """Run each prompt through ``host`` (one forward each) and measure its logit difference
    logit(answer) - logit(wrong) at the last position (sae_prompts_run). The node is the
    activation at ``hook``'s last position: recorded as it arrived, and replaced by row p of
    ``replace`` for prompt p when given.

    Args:
        host: a :class:`sae.Host`.
        hook: the hook point's name or id.
        prompts: a sequence of token-id sequences (1 to max_seq_len tokens each).
        answer, wrong: one token id per prompt.
        replace: float array (n_prompts, d_model), or None for clean runs.

    Returns:
        (diffs (n_prompts,) float32, acts (n_prompts, d_model) float32).
    """
    from .host import Host
    if not isinstance(host, Host):
        raise TypeError("host must be a sae.Host, got %s" % type(host).__name__)
    struct, keep = _prompt_set(host, hook, prompts, answer, wrong)
    n, d = struct.n_prompts, host.d_model
    diffs = np.empty(n, np.float32)
    acts = np.empty((n, d), np.float32)
    rep = None if replace is None else _node_rows("replace", replace, n, d)
    host.call(lib.sae_prompts_run, diffs.ctypes.data, acts.ctypes.data, d, host.table, struct,
              None if rep is None else rep.ctypes.data, d)
    del keep
    return diffs, acts


def prompts_approximation(host, hook, prompts, answer, wrong, acts, recon):
    """Sufficiency and necessity of a dictionary's reconstructions ``recon`` of the clean node
    activations ``acts`` (from :func:`prompts_run`), against mean ablation (Makelov et al.,
    approximation axis; sae_prompts_approximation). Four runs of every prompt.

    Returns:
        a dict with ``clean`` m(a), ``ablated`` m(E[a]), ``sufficient`` m(â), ``necessary``
        m(a - â + E[â]) (each the mean logit difference), ``sufficiency`` (1 best) and
        ``necessity`` (0 best).
    """
    from . import _host_structs
    from .host import Host
    if not isinstance(host, Host):
        raise TypeError("host must be a sae.Host, got %s" % type(host).__name__)
    struct, keep = _prompt_set(host, hook, prompts, answer, wrong)
    n, d = struct.n_prompts, host.d_model
    a = _node_rows("acts", acts, n, d)
    r = _node_rows("recon", recon, n, d)
    out = _structs.new(_host_structs.Approximation)
    host.call(lib.sae_prompts_approximation, out, host.table, struct, a.ctypes.data, d,
              r.ctypes.data, d, None)
    del keep
    return {name: getattr(out, name) for name in ("clean", "ablated", "sufficient",
                                                  "necessary", "sufficiency", "necessity")}
