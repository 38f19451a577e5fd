"""``SparseCodes``: a batch of sparse feature activations in CSR form."""

from typing import NamedTuple

import numpy as np


class SparseCodes(NamedTuple):
    """Sparse codes of ``n`` rows in CSR form, as :meth:`sae.Dictionary.encode_sparse` returns.

    Row ``i`` has the features ``indices[offsets[i]:offsets[i+1]]`` (ascending) with the values
    ``values[offsets[i]:offsets[i+1]]``; only non-zero features are stored.

    Attributes:
        indices: int32 (nnz,) feature ids.
        values: float32 (nnz,) activations.
        offsets: int64 (n + 1,) row starts, ``offsets[0] == 0``, ``offsets[-1] == nnz``.
    """

    indices: np.ndarray
    values: np.ndarray
    offsets: np.ndarray

    @property
    def n_rows(self):
        """Number of rows ``n``."""
        return len(self.offsets) - 1

    @property
    def nnz(self):
        """Number of stored non-zeros."""
        return len(self.indices)

    def row(self, i):
        """``(indices, values)`` of row ``i``."""
        start, stop = self.offsets[i], self.offsets[i + 1]
        return self.indices[start:stop], self.values[start:stop]

    def to_dense(self, d_sae):
        """The (n, d_sae) float32 matrix these codes stand for."""
        self.validate(d_sae)
        dense = np.zeros((self.n_rows, d_sae), dtype=np.float32)
        rows = np.repeat(np.arange(self.n_rows), np.diff(self.offsets))
        dense[rows, self.indices] = self.values
        return dense

    def validate(self, d_sae=None):
        """Raise ValueError unless the arrays are valid CSR codes (ids below ``d_sae`` if given)."""
        offsets, indices, values = self.offsets, self.indices, self.values
        if offsets.ndim != 1 or len(offsets) < 1:
            raise ValueError("offsets must be a 1-D array of n + 1 row starts")
        if indices.ndim != 1 or values.ndim != 1 or len(indices) != len(values):
            raise ValueError("indices has shape %s and values %s; expected two (nnz,) vectors"
                             % (indices.shape, values.shape))
        if offsets[0] != 0 or offsets[-1] != len(indices):
            raise ValueError("offsets run from %d to %d; expected 0 to nnz = %d"
                             % (offsets[0], offsets[-1], len(indices)))
        if np.any(np.diff(offsets) < 0):
            raise ValueError("offsets decrease")
        if d_sae is not None and len(indices) and (indices.min() < 0 or indices.max() >= d_sae):
            raise ValueError("feature ids must lie in [0, %d)" % d_sae)

    @classmethod
    def from_dense(cls, f):
        """CSR codes of the non-zero entries of a 2-D array ``f``."""
        f = np.asarray(f, dtype=np.float32)
        if f.ndim != 2:
            raise ValueError("f has shape %s, expected (n, d_sae)" % (f.shape,))
        rows, cols = np.nonzero(f)
        offsets = np.zeros(f.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=f.shape[0]), out=offsets[1:])
        return cls(cols.astype(np.int32), f[rows, cols], offsets)

    def _for_c(self):
        """The three arrays with the dtypes and contiguity the C decoder reads."""
        offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        indices = np.ascontiguousarray(self.indices, dtype=np.int32)
        values = np.ascontiguousarray(self.values, dtype=np.float32)
        return SparseCodes(indices, values, offsets)
