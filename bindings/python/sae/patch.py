"""``Patch``: an intervention at one hook point (a ``sae_patch``, include/sae/patch.h) — record,
splice, ablate, clamp, steer or edit — applied in place to activations, by itself
(:meth:`Patch.apply`) or inside a model run (:meth:`sae.Host.run`, :meth:`sae.Llama2.generate`);
and the steering directions of a dictionary, exported as a llama.cpp control vector."""

import numpy as np

from . import _arrays, _structs
from . import _host_structs as _hs
from ._lib import fspath_bytes, lib, new_handle
from .codes import SparseCodes
from ._handle import NativeHandle

_KIND_NAMES = {value: name for name, value in _hs.PATCH_KINDS.items()}


def _options(max_tokens, threads):
    return _structs.new(_hs.PatchOptions, n_threads=int(threads), max_tokens=int(max_tokens))


_INT32 = np.iinfo(np.int32)


def _feature(feature):
    """A feature id as an int that fits the C int32 (the library checks it against d_sae)."""
    f = int(feature)
    if not _INT32.min <= f <= _INT32.max:
        raise ValueError("feature id %d is out of range" % f)
    return f


def _feature_ids(features):
    ids = np.atleast_1d(np.asarray(features))
    if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError("features must be a non-empty list of feature ids, got %r" % (features,))
    for f in (ids.min(), ids.max()):
        _feature(f)
    return np.ascontiguousarray(ids, dtype=np.int32)


def _matrix(a, width, name):
    """``a`` as a C-contiguous float32 (rows, width) array."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError("%s has shape %s, expected (rows, %d)" % (name, a.shape, width))
    return _arrays.as_f32(a, (a.shape[0], width), name)


class Patch(NativeHandle):
    """An intervention at one hook point, made by one of the constructors below, on the
    activations (n_tokens, d_in) of a :class:`sae.Dictionary`.

    Notation (patch.h): f = encode(x), x_hat = decode(f), error e = x - x_hat. The feature edits
    (ablate, clamp, edit) keep the error: x' = decode(f') + e, with f' equal to f except on the
    edited features. Install patches at hook points of a model with :meth:`sae.Host.run`
    (several at one hook point apply in the order given), or apply one to an array with
    :meth:`apply`. Everything a patch needs is allocated when it is made: applying it allocates
    nothing, for any number of tokens (``max_tokens`` rows at a time).

    Every constructor takes ``max_tokens`` (rows of its workspace; 0: 256 to 1024, about the size of
    the dictionary's weights) and ``threads`` (encoder threads per call, 0:
    all CPUs). A patch keeps its dictionary alive. Owns its C
    handle (:meth:`close`, or ``with``); one thread at a time.
    """

    def __init__(self):
        raise TypeError("make a sae.Patch with Patch.record, splice, ablate, clamp, steer or edit")

    @classmethod
    def _make(cls, dictionary, create, *args, max_tokens=0, threads=0):
        handle = new_handle()
        create(handle, dictionary._live(), *args, _options(max_tokens, threads))
        self = cls.__new__(cls)
        self._handle = handle.value
        self._dictionary = dictionary
        dictionary._views.add(self)  # the dictionary's memory outlives its close() while we live
        self._kind = _KIND_NAMES[lib.sae_patch_kind(self._handle)]
        self._d_in = dictionary.d_in
        return self

    # ---- constructors ------------------------------------------------------------------------

    @classmethod
    def record(cls, dictionary, capacity, *, activations=True, codes=False, capacity_nnz=0,
               max_tokens=0, threads=0):
        """Record what passes by, x unchanged: the activations and/or their sparse codes, up
        to ``capacity`` tokens (and ``capacity_nnz`` non-zero codes; 0: enough for any codes).
        An apply that would not fit records nothing and raises SaeError (record buffer full).
        Read with :attr:`activations`, :attr:`codes`; empty with :meth:`clear`."""
        what = (_hs.RECORD_ACTIVATIONS if activations else 0) | (_hs.RECORD_CODES if codes else 0)
        return cls._make(dictionary, lib.sae_patch_create_record, what, int(capacity),
                         int(capacity_nnz), max_tokens=max_tokens, threads=threads)

    @classmethod
    def splice(cls, dictionary, *, keep_error=False, max_tokens=0, threads=0):
        """x <- decode(encode(x)); with ``keep_error`` the error is added back (x unchanged)."""
        return cls._make(dictionary, lib.sae_patch_create_splice, int(bool(keep_error)),
                         max_tokens=max_tokens, threads=threads)

    @classmethod
    def ablate(cls, dictionary, features, mode="zero", *, mean=None, pool=None, seed=0,
               max_tokens=0, threads=0):
        """Ablate the codes of ``features``, error kept: ``mode`` "zero" (f'_j = 0), "mean"
        (f'_j = mean[j], ``mean`` a (d_sae,) code vector) or "resample" (per token, the codes of
        a row of ``pool`` (rows, d_sae) drawn uniformly with a generator seeded by ``seed``)."""
        ids = _feature_ids(features)
        if mode == "zero":
            if mean is not None or pool is not None:
                raise ValueError("zero ablation takes neither mean nor pool")
            return cls._make(dictionary, lib.sae_patch_create_ablate_zero, ids.ctypes.data,
                             ids.size, max_tokens=max_tokens, threads=threads)
        if mode == "mean":
            if mean is None or pool is not None:
                raise ValueError("mean ablation needs mean= (and no pool)")
            m = _arrays.as_f32(mean, (dictionary.d_sae,), "mean")
            return cls._make(dictionary, lib.sae_patch_create_ablate_mean, ids.ctypes.data,
                             ids.size, m.ctypes.data, m.size, max_tokens=max_tokens,
                             threads=threads)
        if mode == "resample":
            if pool is None or mean is not None:
                raise ValueError("resample ablation needs pool= (and no mean)")
            p = _matrix(pool, dictionary.d_sae, "pool")
            return cls._make(dictionary, lib.sae_patch_create_ablate_resample, ids.ctypes.data,
                             ids.size, p.ctypes.data, p.shape[0], p.shape[1], p.shape[1],
                             int(seed), max_tokens=max_tokens, threads=threads)
        raise ValueError("unknown ablation mode %r; expected 'zero', 'mean' or 'resample'"
                         % (mode,))

    @classmethod
    def clamp(cls, dictionary, feature, value, *, max_tokens=0, threads=0):
        """Set feature ``feature``'s code to ``value``, error kept."""
        return cls._make(dictionary, lib.sae_patch_create_clamp, _feature(feature), float(value),
                         max_tokens=max_tokens, threads=threads)

    @classmethod
    def steer(cls, dictionary, feature, alpha, *, normalize=False, max_tokens=0, threads=0):
        """x <- x + alpha * W_dec[feature] (the unit direction with ``normalize``)."""
        return cls._make(dictionary, lib.sae_patch_create_steer, _feature(feature), float(alpha),
                         int(bool(normalize)), max_tokens=max_tokens, threads=threads)

    @classmethod
    def edit(cls, dictionary, features, source, *, max_tokens=0, threads=0):
        """Set the codes of ``features`` to their values in ``source`` (a (d_sae,) code row,
        e.g. the codes of a counterfactual activation), error kept."""
        ids = _feature_ids(features)
        src = _arrays.as_f32(source, (dictionary.d_sae,), "source")
        return cls._make(dictionary, lib.sae_patch_create_edit, ids.ctypes.data, ids.size,
                         src.ctypes.data, src.size, max_tokens=max_tokens, threads=threads)

    # ---- lifetime ----------------------------------------------------------------------------

    def _release(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            lib.sae_patch_free(handle)

    def __repr__(self):
        return "<sae.Patch %s d_in=%d%s>" % (self._kind, self._d_in,
                                              "" if self._handle else " closed")

    def _live(self):
        if not self._handle:
            raise ValueError("the patch is closed")
        return self._handle

    kind = property(lambda self: self._kind,
                    doc='"record", "splice", "ablate", "clamp", "steer" or "edit".')
    d_in = property(lambda self: self._d_in, doc="Width of the activations it applies to.")
    dictionary = property(lambda self: self._dictionary, doc="The dictionary it belongs to.")

    # ---- applying ------------------------------------------------------------------------------

    def apply(self, x):
        """Apply the patch to ``x`` (..., d_in) in place and return ``x``.

        ``x`` must be a writeable float32 array whose rows the C code can address (unit column
        stride, e.g. C-contiguous or ``big[:, :d_in]``); anything else raises ValueError, since
        a converted copy would not change ``x``.
        """
        a = np.asarray(x)
        rows, ld, _ = _arrays.as_rows(a, self._d_in, "x")
        if rows.size and (not a.flags.writeable or not np.may_share_memory(rows, a)):
            raise ValueError("x must be a writeable float32 array with unit column stride "
                             "(the patch changes it in place); got %s %s"
                             % (a.dtype, "read-only" if not a.flags.writeable else "strides "
                                + str(a.strides)))
        lib.sae_patch_apply(self._live(), rows.ctypes.data, rows.shape[0], ld)
        return x

    # ---- what a recording patch holds ---------------------------------------------------------

    def _record(self):
        if self._kind != "record":
            raise ValueError("a %s patch records nothing" % self._kind)
        view = _structs.new(_hs.PatchRecord)
        lib.sae_patch_get_record(self._live(), view)
        return view

    @property
    def n_recorded(self):
        """Tokens recorded so far (a recording patch)."""
        return self._record().n_tokens

    @property
    def activations(self):
        """A copy of the recorded activations, (n_recorded, d_in) float32, or None when the
        patch records only codes."""
        r = self._record()
        if not r.activations:
            return None
        return _arrays.copy_from(r.activations, r.n_tokens * r.d_in,
                                 np.float32).reshape(r.n_tokens, r.d_in)

    @property
    def codes(self):
        """A copy of the recorded codes as :class:`sae.SparseCodes` (n_recorded rows), or None
        when the patch records only activations."""
        r = self._record()
        if not r.offsets:
            return None
        return SparseCodes(_arrays.copy_from(r.indices, r.nnz, np.int32) if r.nnz
                           else np.empty(0, np.int32),
                           _arrays.copy_from(r.values, r.nnz, np.float32) if r.nnz
                           else np.empty(0, np.float32),
                           _arrays.copy_from(r.offsets, r.n_tokens + 1, np.int64))

    def clear(self):
        """Empty a recording patch's buffer."""
        self._record()
        lib.sae_patch_clear_record(self._live())


# ---- steering directions -----------------------------------------------------------------------

def steering_direction(dictionary, feature, alpha=1.0, *, normalize=False):
    """``alpha * W_dec[feature]`` (the unit direction with ``normalize``): the vector a steer
    patch adds, as a (d_in,) float32 array (sae_steering_direction)."""
    out = np.empty(dictionary.d_in, np.float32)
    lib.sae_steering_direction(out.ctypes.data, out.size, dictionary._live(), _feature(feature),
                               float(alpha), int(bool(normalize)))
    return out


def export_control_vector(path, directions, layers, model_hint="llama"):
    """Write steering directions as a llama.cpp control vector (GGUF), atomically.

    Args:
        path: output file.
        directions: (n_layers, d) float array, one direction per layer.
        layers: the llama.cpp layer index (>= 1; our hook ``resid_post.L``) of each direction.
        model_hint: the model's ``general.architecture`` in llama.cpp.
    """
    dirs = np.asarray(directions)
    dirs = _matrix(dirs, dirs.shape[-1] if dirs.ndim else 0, "directions")
    ids = np.ascontiguousarray(layers, dtype=np.int32)
    if ids.shape != (dirs.shape[0],):
        raise ValueError("layers has shape %s; expected one layer per direction (%d,)"
                         % (ids.shape, dirs.shape[0]))
    lib.sae_steering_export_gguf(fspath_bytes(path), str(model_hint).encode("utf-8"),
                                 dirs.shape[1], dirs.shape[0], ids.ctypes.data, dirs.ctypes.data,
                                 dirs.shape[1])
