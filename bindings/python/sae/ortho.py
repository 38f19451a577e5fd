"""``Ortho``: orthogonality of an SAE's decoder directions (include/sae/ortho.h): the sae-icm
penalty and its gradient, coherence statistics, symmetric (Loewdin) orthogonalisation, and the
singular-value spectrum with effective ranks."""

import ctypes

import numpy as np

from . import _arrays, _structs
from ._lib import lib, new_handle
from .dictionary import Dictionary

#: ``SAE_ORTHO_SUBSET_DEFAULT``: sae-icm's subset size (``d_sub_decoder``).
SUBSET_DEFAULT = 1024
_LOWDIN_KEEP_NORMS = 1  # SAE_LOWDIN_KEEP_NORMS


class Ortho:
    """Orthogonality tools on the decoder rows ``W_dec`` (F, d) of an SAE.

    Row i is the decoder direction d_i (libsae's layout; sae-icm's ``W_dec.weight`` is its
    transpose). Every method takes ``subset``: None for all F features, or distinct feature ids
    (a 1-D integer array, any order, e.g. from :meth:`subset`). Nothing builds an F x F matrix:
    the penalty and the coherence statistics stream Gram tiles, the spectrum works on the d x d
    side, so F = 65536 rows of d = 2304 fit in memory of the input plus a few tiles.

    The array is borrowed, not copied, when it is float32 with unit column stride (a
    :class:`Dictionary`'s ``W_dec`` always is); it must not change while a call runs.
    """

    def __init__(self, W_dec, threads=None):
        """Args:
            W_dec: (F, d) decoder rows, or a :class:`Dictionary` (its ``W_dec``).
            threads: threads per call (None: the library default, all CPUs).
        """
        self._dictionary = W_dec if isinstance(W_dec, Dictionary) else None
        a = W_dec.W_dec if self._dictionary is not None else np.asarray(W_dec)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError("W_dec has shape %s, expected (F, d) with F, d >= 1" % (a.shape,))
        self._W, self._ld, _ = _arrays.as_rows(a, a.shape[1], "W_dec")
        self._F, self._d = a.shape
        self._threads = 0 if threads is None else int(threads)
        if self._threads < 0:
            raise ValueError("threads must be >= 0 or None, got %r" % threads)

    def __repr__(self):
        return "<sae.Ortho F=%d d=%d>" % (self._F, self._d)

    @property
    def n_features(self):
        """F, the number of decoder rows."""
        return self._F

    @property
    def d(self):
        """Length of the rows."""
        return self._d

    @property
    def W_dec(self):
        """The (F, d) float32 rows the methods read (the input itself when it was borrowed)."""
        return self._W

    # ---- helpers ----------------------------------------------------------------------------

    def _subset(self, subset):
        """``subset`` as (int32 array or None, address, count) for C."""
        if subset is None:
            return None, None, 0
        ids = np.asarray(subset)
        if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
            raise ValueError("subset must be a 1-D array of feature ids, got shape %s dtype %s"
                             % (ids.shape, ids.dtype))
        if ids.size and (ids.min() < 0 or ids.max() >= self._F):
            bad = ids[(ids < 0) | (ids >= self._F)][0]
            raise ValueError("subset holds %d, outside [0, %d)" % (bad, self._F))
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        return ids, _arrays.address(ids), ids.size

    def _n(self, count):
        return count if count else self._F

    @staticmethod
    def subset(n, n_features, seed=0, counter=0):
        """A uniformly random subset of ``min(n, n_features)`` feature ids, ascending (int32).

        Depends only on (seed, counter, n, n_features); sae-icm redraws its subset each step,
        which is ``counter = step`` here.
        """
        n, n_features = int(n), int(n_features)
        out = np.empty(max(min(n, n_features), 0), dtype=np.int32)
        drawn = ctypes.c_int64()
        lib.sae_ortho_subset(_arrays.address(out) if out.size else None, ctypes.byref(drawn),
                             n, n_features, int(seed), int(counter))
        return out[:drawn.value]

    # ---- penalty ----------------------------------------------------------------------------

    def penalty(self, subset=None, grad=False, scale=1.0):
        """sae-icm's penalty P = sum_{i>j in S} (d_i . d_j)^2 on the raw rows.

        Args:
            subset: feature ids S, or None for all.
            grad: also return dP/dW_dec.
            scale: factor on the gradient (e.g. the penalty's weight lambda).

        Returns:
            P (float), or ``(P, g)`` with g (F, d) float32: ``scale * 2 sum_{j in S, j != i}
            (d_i . d_j) d_j`` on the rows of S, zero elsewhere.
        """
        ids, ids_ptr, count = self._subset(subset)
        value = ctypes.c_double()
        g = np.zeros((self._F, self._d), dtype=np.float32) if grad else None
        lib.sae_ortho_penalty(ctypes.byref(value), _arrays.address(g), self._d, float(scale),
                              _arrays.address(self._W), self._F, self._d, self._ld, ids_ptr,
                              count, self._threads)
        return (value.value, g) if grad else value.value

    @staticmethod
    def relative_l2(x_hat, x, grad=False):
        """sae-icm's reconstruction term mean_t ||x_hat_t - x_t|| / (||x_t|| + 1e-8) over rows
        of (n, d) arrays, and with ``grad=True`` also dL/dx_hat (n, d) float32."""
        xh = np.asarray(x_hat)
        if xh.ndim != 2:
            raise ValueError("x_hat has shape %s, expected (n, d)" % (xh.shape,))
        rows_h, ldh, _ = _arrays.as_rows(xh, xh.shape[1], "x_hat")
        rows_x, ldx, lead = _arrays.as_rows(x, xh.shape[1], "x")
        if lead != xh.shape[:1]:
            raise ValueError("x has shape %s, x_hat %s" % (np.shape(x), xh.shape))
        value = ctypes.c_double()
        g = np.empty(xh.shape, dtype=np.float32) if grad else None
        lib.sae_ortho_relative_l2(ctypes.byref(value), _arrays.address(g), xh.shape[1],
                                  _arrays.address(rows_h), ldh, _arrays.address(rows_x), ldx,
                                  xh.shape[0], xh.shape[1])
        return (value.value, g) if grad else value.value

    # ---- statistics -------------------------------------------------------------------------

    def coherence(self, subset=None, per_feature=False):
        """Coherence statistics of the normalised rows of S (at least two).

        Returns a dict (``sae_coherence``; definitions in ortho.h): ``n``, ``d``, ``n_zero``,
        ``max_cos`` with its pair ``max_i``, ``max_j``, ``sum_cos``, ``mean_cos`` (over the
        C(n, 2) pairs), ``mean_max_cos``, ``frame_potential`` and ``frame_potential_bound``,
        the Welch quantities ``welch_sum_norm``, ``welch_mean_norm``, ``welch_bound``,
        ``welch_sum_raw``, ``welch_normalizing_raw``, ``welch_mean_raw``, and
        ``max_cos_hist`` ((20,) int64 counts of per-feature max |cos| in bins of 0.05).
        With ``per_feature=True`` returns ``(stats, max_cos)``, max_cos (n,) float32 the max
        |cos| of each feature of S (in the order of S) to the others.
        """
        ids, ids_ptr, count = self._subset(subset)
        out = _structs.new(_structs.Coherence)
        fmax = np.empty(self._n(count), dtype=np.float32) if per_feature else None
        lib.sae_ortho_coherence(out, _arrays.address(fmax), _arrays.address(self._W), self._F,
                                self._d, self._ld, ids_ptr, count, self._threads)
        stats = {name: getattr(out, name) for name, _ in _structs.Coherence._fields_
                 if name not in ("struct_size", "n_bins")}
        stats["max_cos_hist"] = np.array(out.max_cos_hist, dtype=np.int64)
        return (stats, fmax) if per_feature else stats

    def spectrum(self, subset=None):
        """Singular values and effective ranks of the (raw) rows of S.

        Returns a dict: ``singular_values`` (min(n, d),) float32 descending (through the
        smaller Gram matrix: values below ~1e-3 sigma_max are approximate), ``effective_rank``
        exp(H(sigma / sum sigma)) and ``participation_ratio`` (sum sigma^2)^2 / sum sigma^4.
        """
        ids, ids_ptr, count = self._subset(subset)
        sigma = np.empty(min(self._n(count), self._d), dtype=np.float32)
        er, pr = ctypes.c_double(), ctypes.c_double()
        lib.sae_ortho_spectrum(_arrays.address(sigma), ctypes.byref(er), ctypes.byref(pr),
                               _arrays.address(self._W), self._F, self._d, self._ld, ids_ptr,
                               count, self._threads)
        return {"singular_values": sigma, "effective_rank": er.value,
                "participation_ratio": pr.value}

    # ---- Loewdin ----------------------------------------------------------------------------

    def lowdin(self, subset=None, keep_norms=False, return_singular_values=False):
        """Symmetric (Loewdin) orthogonalisation of the rows of S (at most d of them).

        The rows of S become those of U V^T for the thin SVD D_S = U diag(sigma) V^T: the
        orthonormal set nearest D_S. ``keep_norms`` gives each row its input norm back.

        Returns:
            A new (F, d) float32 array: W_dec with the rows of S replaced (the input is not
            changed), or ``(W, sigma)`` with sigma (|S|,) the singular values before.
        """
        ids, ids_ptr, count = self._subset(subset)
        W = np.array(self._W, dtype=np.float32, order="C")
        sigma = np.empty(self._n(count), dtype=np.float32)
        lib.sae_ortho_lowdin(_arrays.address(W), _arrays.address(sigma), self._F, self._d,
                             self._d, ids_ptr, count, _LOWDIN_KEEP_NORMS if keep_norms else 0,
                             self._threads)
        return (W, sigma) if return_singular_values else W

    def lowdin_dictionary(self, subset=None, keep_norms=False):
        """:meth:`lowdin` as a new :class:`Dictionary` (everything else copied), for an Ortho
        made from a Dictionary."""
        if self._dictionary is None:
            raise TypeError("this Ortho was made from an array; use lowdin()")
        ids, ids_ptr, count = self._subset(subset)
        handle = new_handle()
        lib.sae_ortho_dict_lowdin(handle, None, self._dictionary._live(), ids_ptr, count,
                                  _LOWDIN_KEEP_NORMS if keep_norms else 0, self._threads)
        return Dictionary(handle, self._dictionary.threads)
