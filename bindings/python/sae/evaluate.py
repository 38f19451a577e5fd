"""``evaluate``: reconstruction and sparsity metrics of a dictionary over a stream of rows
(``sae_dict_evaluate``, include/sae/eval.h)."""

import dataclasses

import numpy as np

from . import _arrays, _structs
from ._callbacks import CallbackGuard
from ._lib import lib
from .dictionary import _ENCODE_TOPK_THRESHOLD, Dictionary
from .source import opened

#: Lower edge (log10 of the firing frequency) and width (decades) of the density bins.
DENSITY_LOG10_MIN, DENSITY_BIN_WIDTH = (_structs.EVAL_DENSITY_LOG10_MIN,
                                        _structs.EVAL_DENSITY_BIN_WIDTH)


@dataclasses.dataclass(frozen=True, eq=False)
class EvalResult:
    """What :func:`evaluate` measured over N rows (``sae_eval_result``; formulas in eval.h).

    Attributes:
        rows: N, the rows evaluated.
        d_sae: features of the dictionary.
        mse: mean_b ||x - x_hat||^2 (summed over d_in).
        fvu: fraction of variance unexplained, sum ||x - x_hat||^2 / sum_b ||x_b - mean x||^2
            (NaN when the rows have no variance).
        explained_variance: 1 - fvu.
        l0: mean number of non-zero codes per row.
        relative_reconstruction_bias: sum ||x_hat||^2 / sum <x, x_hat>.
        shrinkage: mean ||x_hat|| / ||x|| over rows with ||x|| > 0.
        dense_threshold: the density above which a feature counted as dense.
        n_dead: features that never fired.
        n_dense: features firing on more than dense_threshold of the rows.
        density_histogram: (20,) int64: features that fired, by log10 of their firing
            frequency p, bin i holding [-10 + 0.5 i, -9.5 + 0.5 i) (the last one also p = 1);
            it sums to d_sae - n_dead.
        fire_counts: (d_sae,) int64: rows on which each feature fired.
    """

    rows: int
    d_sae: int
    mse: float
    fvu: float
    explained_variance: float
    l0: float
    relative_reconstruction_bias: float
    shrinkage: float
    dense_threshold: float
    n_dead: int
    n_dense: int
    density_histogram: np.ndarray
    fire_counts: np.ndarray


def evaluate(dictionary, source, max_rows=None, *, threads=None, block_rows=None,
             dense_threshold=None, use_threshold=False):
    """Evaluate ``dictionary`` on rows of ``source``, with bounded memory (``block_rows`` rows
    encoded at a time), in C.

    Args:
        dictionary: a :class:`Dictionary`.
        source: an (N, d_in) array (one pass), file paths (one pass; see
            :meth:`Source.from_files`), a :class:`Synthetic` (its next ``max_rows`` rows), or
            a :class:`Source`, read from where it stands.
        max_rows: rows to evaluate (None: one epoch of the source, or until it ends; required
            for a Synthetic).
        threads: threads of the encoder (None: the dictionary's ``threads``).
        block_rows: rows encoded at a time (None: 4096).
        dense_threshold: density above which a feature is dense, in (0, 1] (None: 0.1).
        use_threshold: TopK dictionaries with a threshold: encode with it (as
            :meth:`Dictionary.encode`).

    Returns:
        An :class:`EvalResult`.

    Raises:
        SaeError: rows of the wrong width (code -3), a NaN or infinity in them (-6, with its
            position), no rows (-1), or the error of the source.
    """
    if not isinstance(dictionary, Dictionary):
        raise TypeError("dictionary must be a sae.Dictionary, got %s" % type(dictionary).__name__)
    for name, value in (("max_rows", max_rows), ("block_rows", block_rows),
                        ("dense_threshold", dense_threshold)):
        if value is not None and not value > 0:  # 0 would select the C default
            raise ValueError("%s must be positive or None, got %r" % (name, value))
    options = _structs.new(
        _structs.EvalOptions, max_rows=max_rows or 0, block_rows=block_rows or 0,
        dense_threshold=dense_threshold or 0.0,
        n_threads=dictionary.threads if threads is None else int(threads),
        encode_flags=_ENCODE_TOPK_THRESHOLD if use_threshold else 0)
    result = _structs.new(_structs.EvalResult)
    fire_counts = np.empty(dictionary.d_sae, dtype=np.int64)
    guard = CallbackGuard()
    with opened(source, dictionary.d_in, loop=False, rows=max_rows,
                read_chunk_rows=block_rows) as src, src._use(guard) as src_handle:
        if src.endless and max_rows is None:
            raise ValueError("this source never ends: give max_rows")
        guard.call(lib.sae_dict_evaluate, result, _arrays.address(fire_counts),
                   dictionary._live(), src_handle, options)
    fields = {name: getattr(result, name) for name, _ in _structs.EvalResult._fields_
              if name not in ("struct_size", "reserved")}
    fields["density_histogram"] = np.array(result.density_histogram, dtype=np.int64)
    return EvalResult(fire_counts=fire_counts, **fields)
