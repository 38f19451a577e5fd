"""``Synthetic``: rows with known ground-truth features (a ``sae_synth``), and the metrics that
score learned directions against them (``mmcs``, ``mcc``, ``shrinkage``)."""

import ctypes

import numpy as np

from . import _arrays, _structs
from ._lib import lib, new_handle
from ._handle import NativeHandle


class Synthetic(NativeHandle):
    """A generator of synthetic activations with known features (include/sae/synth.h).

    Each row is ``x = sum_g a_g t_g + noise_std * N(0, I)`` over ``n_features`` unit directions
    ``t_g`` in R^d; feature g fires with probability ``p_g`` (weights ``decay**g``, rescaled so
    that ``n_active`` features fire per row on average) with coefficient ``a_g = c_g s_g``,
    ``c_g, s_g ~ U(0, 1)``. With ``correlated=True`` the firing is correlated through a Gaussian
    copula drawn once per ``copula_batch`` rows (HoagyC/sparse_coding).

    Reproducible: row i (counted over all calls) depends only on the seed, the settings and i,
    so ``sample(100)`` equals four ``sample(25)`` and the thread count does not matter.

    Owns its C handle: :meth:`close` (or ``with``) releases it. One thread at a time.
    """

    def __init__(self, d=256, n_features=512, n_active=5, decay=0.99, correlated=False,
                 noise_std=0, seed=0, threads=None, *, copula_batch=None):
        """Draw the directions (and, when ``correlated``, the copula's covariance).

        Args:
            d: dimension of the rows.
            n_features: number G of ground-truth features.
            n_active: expected number of firing features per row, in (0, G].
            decay: ratio of successive feature weights, in (0, 1].
            correlated: correlated firing (a Gaussian copula; costs O(G^3) here).
            noise_std: standard deviation of the Gaussian noise added to every entry.
            seed: seed of every random draw.
            threads: threads per :meth:`sample` call (None: the library default).
            copula_batch: correlated only: rows sharing one copula draw (None: 4096).

        Raises ValueError for a non-positive size, and :class:`SaeError` for what the library
        rejects (code -1 with the detail, e.g. ``n_active`` above G).
        """
        for name, value in (("d", d), ("n_features", n_features), ("n_active", n_active),
                            ("decay", decay)):
            if not value > 0:  # 0 would silently select the C default
                raise ValueError("%s must be positive, got %r" % (name, value))
        options = _structs.new(
            _structs.SynthOptions, correlated=1 if correlated else 0, d=int(d),
            n_features=int(n_features), n_active=float(n_active), decay=float(decay),
            noise_std=float(noise_std), batch_size=0 if copula_batch is None else int(copula_batch),
            seed=int(seed), n_threads=0 if threads is None else int(threads))
        handle = new_handle()
        lib.sae_synth_create(handle, options)
        self._handle = handle.value
        self._d = lib.sae_synth_d(self._handle)
        self._n_features = lib.sae_synth_n_features(self._handle)

    # ---- lifetime ---------------------------------------------------------------------------

    @property
    def closed(self):
        """True after :meth:`close`."""
        return self._handle is None

    _copy_hint = "; make another with the same seed and settings"

    def _release(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            lib.sae_synth_free(handle)

    def __repr__(self):
        state = " closed" if self.closed else ""
        return "<sae.Synthetic d=%d n_features=%d%s>" % (self._d, self._n_features, state)

    def _live(self):
        if self._handle is None:
            raise ValueError("the generator is closed")
        return self._handle

    # ---- data -------------------------------------------------------------------------------

    @property
    def d(self):
        """Dimension of the rows."""
        return self._d

    @property
    def n_features(self):
        """Number G of ground-truth features."""
        return self._n_features

    def sample(self, n, *, out=None, return_codes=False):
        """Draw the next ``n`` rows.

        Args:
            n: rows to draw (>= 0).
            out: optional C-contiguous float32 (n, d) array to write the rows into.
            return_codes: also return the (n, G) float32 coefficients ``a``, so that
                ``x = codes @ directions + noise``.

        Returns:
            (n, d) float32 rows (``out`` when given), or ``(rows, codes)``.
        """
        handle = self._live()
        n = int(n)
        if out is None:
            out = np.empty((max(n, 0), self._d), dtype=np.float32)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.float32
                  and out.shape == (n, self._d) and out.flags.c_contiguous
                  and out.flags.writeable):
            raise ValueError("out must be a writeable C-contiguous float32 array of shape %s"
                             % ((n, self._d),))
        codes = (np.empty((max(n, 0), self._n_features), dtype=np.float32)
                 if return_codes else None)
        lib.sae_synth_sample(handle, n, _arrays.address(out), self._d, _arrays.address(codes),
                             self._n_features)
        return (out, codes) if return_codes else out

    @property
    def directions(self):
        """(G, d) float32 unit ground-truth directions (a copy)."""
        return _arrays.copy_from(lib.sae_synth_directions(self._live()),
                                 self._n_features * self._d,
                                 np.float32).reshape(self._n_features, self._d)

    @property
    def probabilities(self):
        """(G,) float32 firing probabilities in use (a copy; correlated: those of the copula
        batch of the last row drawn)."""
        return _arrays.copy_from(lib.sae_synth_probabilities(self._live()), self._n_features,
                                 np.float32)


# ---- metrics ------------------------------------------------------------------------------------

def _matrix(a, name, width=None):
    """``a`` as float32 rows for C: (rows, n, ld, width); ValueError unless 2-D (of ``width``)."""
    a = np.asarray(a)
    if a.ndim != 2 or (width is not None and a.shape[1] != width):
        raise ValueError("%s has shape %s, expected (n, %s)"
                         % (name, a.shape, "d" if width is None else width))
    rows, ld, _ = _arrays.as_rows(a, a.shape[1], name)
    return rows, rows.shape[0], ld, a.shape[1]


def mmcs(A, B):
    """Mean max cosine similarity between the rows of A (na, d) and B (nb, d), both ways.

    Returns ``(a_to_b, b_to_a)``: ``a_to_b = mean_i max_j cos(A_i, B_j)`` (with A a learned
    decoder and B the ground truth, Cunningham et al.'s MMCS) and ``b_to_a`` the mean over rows
    of B. Signed cosines; a zero row has cosine 0 with everything.
    """
    a, na, lda, d = _matrix(A, "A")
    b, nb, ldb, _ = _matrix(B, "B", d)
    a_to_b, b_to_a = ctypes.c_double(), ctypes.c_double()
    lib.sae_mmcs(_arrays.address(a), na, lda, _arrays.address(b), nb, ldb, d,
                 ctypes.byref(a_to_b), ctypes.byref(b_to_a))
    return a_to_b.value, b_to_a.value


def mcc(A, B, return_match=False):
    """Mean |cos| over the one-to-one matching of rows of A (na, d) to rows of B (nb, d) that
    maximises the total |cos| (Hungarian algorithm, as SAELens with scipy).

    Returns the MCC, or ``(mcc, match)`` with ``match`` the (na,) int32 row of B matched to
    each row of A (-1 when na > nb leaves a row unmatched).
    """
    a, na, lda, d = _matrix(A, "A")
    b, nb, ldb, _ = _matrix(B, "B", d)
    value = ctypes.c_double()
    match = np.empty(na, dtype=np.int32) if return_match else None
    lib.sae_mcc(_arrays.address(a), na, lda, _arrays.address(b), nb, ldb, d,
                ctypes.byref(value), _arrays.address(match))
    return (value.value, match) if return_match else value.value


def shrinkage(x, x_hat):
    """Mean over rows with ``||x|| > 0`` of ``||x_hat|| / ||x||`` for (n, d) arrays (SAELens);
    below 1 when an SAE shrinks its reconstructions."""
    rows, n, ldx, d = _matrix(x, "x")
    hat, n_hat, ldh, _ = _matrix(x_hat, "x_hat", d)
    if n_hat != n:
        raise ValueError("x has %d rows and x_hat %d" % (n, n_hat))
    value = ctypes.c_double()
    lib.sae_shrinkage(_arrays.address(rows), ldx, _arrays.address(hat), ldh, n, d,
                      ctypes.byref(value))
    return value.value
