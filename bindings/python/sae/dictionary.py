"""``Dictionary``: one sparse autoencoder (a ``sae_dict``) and the encoders that run it."""

import ctypes
import threading
import weakref

import numpy as np

from . import _arrays, _structs
from ._lib import fspath_bytes, lib, new_handle
from .codes import SparseCodes

#: Architecture names <-> ``sae_arch`` values (dict.h).
ARCHS = _structs.ARCHS
#: Input normalisation names <-> ``sae_input_norm`` values (dict.h).
INPUT_NORMS = {"none": 0, "scale": 1, "constant_rescale": 2, "layer_norm": 3}
#: File format names <-> ``sae_format`` values (io.h). ``None`` means "auto".
FORMATS = {"auto": 0, "saelens": 1, "sparsify": 2, "dictionary_learning": 3, "openai": 4,
           "sae_icm": 5}

# sae_dict_flag and sae_encode_flag bits.
_NO_B_DEC_INPUT = 1 << 0
_RELU_BEFORE_TOPK = 1 << 1
_RESCALE_BY_DECODER_NORM = 1 << 2
_ENCODE_TOPK_THRESHOLD = 1 << 0

# Weight arrays: name -> its shape in terms of (d_in, d_sae).
_WEIGHT_SHAPES = {
    "W_enc": lambda d_in, d_sae: (d_in, d_sae),
    "b_enc": lambda d_in, d_sae: (d_sae,),
    "W_dec": lambda d_in, d_sae: (d_sae, d_in),
    "b_dec": lambda d_in, d_sae: (d_in,),
    "threshold": lambda d_in, d_sae: (d_sae,),
    "b_gate": lambda d_in, d_sae: (d_sae,),
    "b_mag": lambda d_in, d_sae: (d_sae,),
    "r_mag": lambda d_in, d_sae: (d_sae,),
}


def _lookup(table, value, what):
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError("unknown %s %r; expected one of %s"
                         % (what, value, ", ".join(map(repr, table)))) from None


def _text(raw):
    return raw.decode("utf-8") if raw is not None else None


class _Worker:
    """One ``sae_encoder`` (and the ``sae_codes`` its sparse encodes fill)."""

    __slots__ = ("encoder", "codes")

    def __init__(self, encoder):
        self.encoder = encoder
        self.codes = None

    def free(self):
        lib.sae_codes_free(self.codes)
        lib.sae_encoder_free(self.encoder)
        self.encoder = self.codes = None


class Dictionary:
    """A sparse autoencoder: weights, architecture and conventions, immutable once made.

    Make one with :func:`sae.load` or :meth:`Dictionary.from_arrays`. It owns its C handle:
    call :meth:`close` (or use ``with``) to release it early; otherwise it is released when the
    object is garbage collected.

    The weight properties (``W_enc``, ``W_dec``, ...) are read-only numpy views of the
    dictionary's own memory; each view keeps the dictionary's memory alive, even past
    :meth:`close`, which then only marks the object closed and frees the memory with the last view.

    Threads: a Dictionary may be used from several threads at once. C encoders hold per-call
    workspace and are one-thread-at-a-time, so each Python thread gets its own encoder for each
    ``threads`` value (and for ``use_threshold``), made on first use and reused afterwards.
    ctypes releases the GIL during the C calls, so encodes on different threads run in
    parallel. For ``constant_rescale`` and ``layer_norm`` dictionaries, :meth:`decode` uses the
    per-row statistics of the last :meth:`encode` / :meth:`encode_sparse` on the same thread
    with the same ``threads``, which must have had the same number of rows (as SAELens does);
    :meth:`reconstruct` needs no such pairing. Encoders of finished threads are reused by later
    threads that get the same thread id, and all are freed by :meth:`close`. Do not call
    :meth:`close` while another thread is still using the dictionary.
    """

    def __init__(self, handle, threads=0):
        """Wrap a ``sae_dict *`` (an int or ``c_void_p``) and take ownership of it.

        Most code wants :func:`sae.load` or :meth:`from_arrays` instead.
        """
        self._handle = handle.value if hasattr(handle, "value") else handle
        if not self._handle:
            raise ValueError("NULL sae_dict handle")
        self._threads = int(threads)
        self._closed = False
        self._lock = threading.Lock()
        self._workers = {}
        self._views = weakref.WeakSet()
        cfg = _structs.new(_structs.DictConfig)
        lib.sae_dict_get_config(self._handle, cfg)
        self._cfg = cfg
        self._model_name = _text(cfg.model_name)  # copied now: the C pointers are borrowed
        self._hook_name = _text(cfg.hook_name)

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, arch="standard", *, W_enc, b_enc=None, W_dec, b_dec=None, k=None,
                    threshold=None, b_gate=None, b_mag=None, r_mag=None,
                    apply_b_dec_to_input=True, relu_before_topk=False,
                    rescale_acts_by_decoder_norm=False, input_norm="none", act_scale=None,
                    model_name=None, hook_name=None, threads=0):
        """Make a dictionary from numpy arrays in the canonical (SAELens) layout, copying them.

        Args:
            arch: "standard", "topk", "batchtopk", "jumprelu" or "gated".
            W_enc: (d_in, d_sae) encoder, so that ``pre = x' @ W_enc + b_enc``.
            b_enc: (d_sae,) encoder bias, or None for zeros (Gated uses none).
            W_dec: (d_sae, d_in) decoder; row j is the direction of feature j.
            b_dec: (d_in,) decoder bias, or None for zeros.
            k: features kept per row (TopK, BatchTopK).
            threshold: (d_sae,) JumpReLU / BatchTopK thresholds (optional for TopK, used by
                ``encode(use_threshold=True)``).
            b_gate, b_mag, r_mag: (d_sae,) Gated parameters, None for zeros.
            apply_b_dec_to_input: subtract b_dec from the input before encoding.
            relu_before_topk: TopK applies ReLU before selecting (dictionary_learning,
                sparsify, sae-icm) rather than after (SAELens, OpenAI).
            rescale_acts_by_decoder_norm: SAELens' rescale of pre-activations by ||d_j||.
            input_norm: "none", "scale" (x * act_scale), "constant_rescale" or "layer_norm".
            act_scale: the "scale" factor (None means 1).
            model_name, hook_name: metadata strings.
            threads: threads per call for this dictionary's encoders (0: all CPUs).

        Arrays may have any real dtype and layout; they are converted to float32 C-contiguous.
        Raises ValueError for a wrong shape or an unknown name, :class:`SaeError` for what the
        library rejects (e.g. code -6 for a NaN or infinite weight, naming it).
        """
        arch_id = _lookup(ARCHS, arch, "architecture")
        norm_id = _lookup(INPUT_NORMS, input_norm, "input_norm")
        W_enc_a = np.asarray(W_enc)
        if W_enc_a.ndim != 2:
            raise ValueError("W_enc has shape %s, expected (d_in, d_sae)" % (W_enc_a.shape,))
        d_in, d_sae = W_enc_a.shape
        given = {"W_enc": W_enc_a, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec,
                 "threshold": threshold, "b_gate": b_gate, "b_mag": b_mag, "r_mag": r_mag}
        arrays = {name: _arrays.as_f32(value, _WEIGHT_SHAPES[name](d_in, d_sae), name)
                  for name, value in given.items() if value is not None}
        weights = _structs.new(_structs.DictWeights,
                               **{name: _arrays.address(a) for name, a in arrays.items()})
        flags = ((0 if apply_b_dec_to_input else _NO_B_DEC_INPUT)
                 | (_RELU_BEFORE_TOPK if relu_before_topk else 0)
                 | (_RESCALE_BY_DECODER_NORM if rescale_acts_by_decoder_norm else 0))
        config = _structs.new(
            _structs.DictConfig, arch=arch_id, d_in=d_in, d_sae=d_sae,
            k=0 if k is None else int(k), flags=flags, input_norm=norm_id,
            act_scale=0.0 if act_scale is None else float(act_scale),
            model_name=None if model_name is None else str(model_name).encode("utf-8"),
            hook_name=None if hook_name is None else str(hook_name).encode("utf-8"))
        handle = new_handle()
        lib.sae_dict_create(handle, config, weights, None)
        return cls(handle, threads=threads)

    # ---- lifetime ---------------------------------------------------------------------------

    @property
    def closed(self):
        """True after :meth:`close`."""
        return self._closed

    def close(self):
        """Release the encoders and the dictionary. Further calls raise ValueError.

        If weight views are still alive, the dictionary's memory is freed with the last of them.
        """
        if self._closed:
            return
        self._closed = True
        self._free_workers()
        if not self._views:
            self._free_handle()

    def _free_workers(self):
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.free()

    def _free_handle(self):
        handle, self._handle = self._handle, None
        if handle:
            lib.sae_dict_free(handle)

    def __del__(self):
        try:
            if getattr(self, "_handle", None):
                self._free_workers()
                self._free_handle()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass

    def __enter__(self):
        return self

    # The dictionary is immutable: a copy is the object itself (copying the handle would free
    # it twice). Pickling would need the weights: use save() and load().
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        raise TypeError("a sae.Dictionary cannot be pickled; save() it and load() it instead")

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = " closed" if self._closed else ""
        k = " k=%d" % self.k if self.k else ""
        return "<sae.Dictionary %s d_in=%d d_sae=%d%s%s>" % (self.arch, self.d_in, self.d_sae,
                                                             k, state)

    def _live(self):
        if self._closed:
            raise ValueError("the dictionary is closed")
        return self._handle

    def _worker(self, threads, use_threshold):
        handle = self._live()
        n_threads = self._threads if threads is None else int(threads)
        flags = _ENCODE_TOPK_THRESHOLD if use_threshold else 0
        key = (threading.get_ident(), n_threads, flags)
        with self._lock:
            worker = self._workers.get(key)
        if worker is None:
            options = _structs.new(_structs.EncoderOptions, n_threads=n_threads, flags=flags)
            encoder = new_handle()
            lib.sae_encoder_create(encoder, handle, options)
            worker = _Worker(encoder.value)
            with self._lock:  # only this thread uses this key: no race on insertion
                self._workers[key] = worker
        return worker

    # ---- settings ---------------------------------------------------------------------------

    @property
    def arch(self):
        """Architecture: "standard", "topk", "batchtopk", "jumprelu" or "gated"."""
        return lib.sae_arch_name(self._cfg.arch).decode()

    @property
    def d_in(self):
        """Input width."""
        return self._cfg.d_in

    @property
    def d_sae(self):
        """Number of features."""
        return self._cfg.d_sae

    @property
    def k(self):
        """Features kept per row (TopK, BatchTopK), else None."""
        return self._cfg.k or None

    @property
    def apply_b_dec_to_input(self):
        """Whether b_dec is subtracted from the input before encoding."""
        return not self._cfg.flags & _NO_B_DEC_INPUT

    @property
    def relu_before_topk(self):
        """TopK: whether ReLU is applied before the top-k selection."""
        return bool(self._cfg.flags & _RELU_BEFORE_TOPK)

    @property
    def rescale_acts_by_decoder_norm(self):
        """Whether pre-activations are multiplied by ||d_j|| (and codes divided by it)."""
        return bool(self._cfg.flags & _RESCALE_BY_DECODER_NORM)

    @property
    def input_norm(self):
        """Input normalisation: "none", "scale", "constant_rescale" or "layer_norm"."""
        for name, value in INPUT_NORMS.items():
            if value == self._cfg.input_norm:
                return name
        return "unknown(%d)" % self._cfg.input_norm

    @property
    def act_scale(self):
        """The "scale" input normalisation factor (1.0 when unset)."""
        return self._cfg.act_scale or 1.0

    @property
    def model_name(self):
        """Model the SAE was trained on, or None."""
        return self._model_name

    @property
    def hook_name(self):
        """Hook point, e.g. "blocks.3.hook_resid_post", or None."""
        return self._hook_name

    @property
    def threads(self):
        """Default threads per call of this dictionary's encoders (0: all CPUs)."""
        return self._threads

    # ---- weights (borrowed, read-only) ------------------------------------------------------

    def _view(self, ptr, shape):
        if not ptr:
            return None
        view, holder = _arrays.borrowed_view(ptr, shape, np.float32, self)
        self._views.add(holder)
        return view

    def _weight(self, name):
        weights = _structs.new(_structs.DictWeights)
        lib.sae_dict_get_weights(self._live(), weights)
        return self._view(getattr(weights, name), _WEIGHT_SHAPES[name](self.d_in, self.d_sae))

    W_enc = property(lambda self: self._weight("W_enc"),
                     doc="(d_in, d_sae) encoder matrix, read-only view.")
    b_enc = property(lambda self: self._weight("b_enc"),
                     doc="(d_sae,) encoder bias, read-only view (None if absent).")
    W_dec = property(lambda self: self._weight("W_dec"),
                     doc="(d_sae, d_in) decoder matrix, read-only view.")
    b_dec = property(lambda self: self._weight("b_dec"),
                     doc="(d_in,) decoder bias, read-only view (None if absent).")
    threshold = property(lambda self: self._weight("threshold"),
                         doc="(d_sae,) JumpReLU/BatchTopK thresholds, read-only view, or None.")
    b_gate = property(lambda self: self._weight("b_gate"),
                      doc="(d_sae,) Gated gate bias, read-only view, or None.")
    b_mag = property(lambda self: self._weight("b_mag"),
                     doc="(d_sae,) Gated magnitude bias, read-only view, or None.")
    r_mag = property(lambda self: self._weight("r_mag"),
                     doc="(d_sae,) Gated magnitude log-scale, read-only view, or None.")

    @property
    def decoder_norms(self):
        """(d_sae,) norms ||d_j|| of the decoder rows, read-only view."""
        return self._view(lib.sae_dict_decoder_norms(self._live()), (self.d_sae,))

    # ---- encode / decode --------------------------------------------------------------------

    def encode(self, x, return_pre=False, *, threads=None, use_threshold=False):
        """Dense codes ``f = act(pre)`` of ``x``.

        Args:
            x: (..., d_in) activations of any real dtype and layout (float32 arrays with
                contiguous rows, possibly row-strided, are read in place; others are converted).
            return_pre: also return the pre-activations ``x' @ W_enc + b_enc`` (Gated: the
                magnitude pre-activation).
            threads: threads for this call (default: the dictionary's ``threads``).
            use_threshold: TopK dictionaries with a threshold: keep ``ReLU(pre) > threshold``
                instead of the top k (dictionary_learning ``use_threshold=True``).

        Returns:
            (..., d_sae) float32 codes, or ``(codes, pre)`` when ``return_pre``.
        """
        worker = self._worker(threads, use_threshold)
        rows, ld, lead = _arrays.as_rows(x, self.d_in, "x")
        n, d_sae = rows.shape[0], self.d_sae
        f = np.empty((n, d_sae), dtype=np.float32)
        pre = np.empty((n, d_sae), dtype=np.float32) if return_pre else None
        if n:
            lib.sae_encoder_encode(worker.encoder, n, _arrays.address(rows), ld,
                                   _arrays.address(f), d_sae, _arrays.address(pre), d_sae)
        f = f.reshape(lead + (d_sae,))
        return (f, pre.reshape(lead + (d_sae,))) if return_pre else f

    def encode_sparse(self, x, *, threads=None, use_threshold=False):
        """Sparse codes of ``x`` (..., d_in), rows flattened, as :class:`SparseCodes`.

        Never builds the dense (n, d_sae) matrix. Arguments as :meth:`encode`.
        """
        worker = self._worker(threads, use_threshold)
        rows, ld, _ = _arrays.as_rows(x, self.d_in, "x")
        n = rows.shape[0]
        if n == 0:
            return SparseCodes(np.empty(0, np.int32), np.empty(0, np.float32),
                               np.zeros(1, np.int64))
        if worker.codes is None:
            codes = new_handle()
            lib.sae_codes_create(codes, None)
            worker.codes = codes.value
        lib.sae_encoder_encode_sparse(worker.encoder, n, _arrays.address(rows), ld, worker.codes)
        nnz = lib.sae_codes_nnz(worker.codes)
        return SparseCodes(
            _arrays.copy_from(lib.sae_codes_indices(worker.codes), nnz, np.int32),
            _arrays.copy_from(lib.sae_codes_values(worker.codes), nnz, np.float32),
            _arrays.copy_from(lib.sae_codes_offsets(worker.codes),
                              lib.sae_codes_rows(worker.codes) + 1, np.int64))

    def decode(self, f, *, threads=None):
        """Reconstruction ``x_hat = norm_out(f @ W_dec + b_dec)``.

        Args:
            f: dense (..., d_sae) codes, or :class:`SparseCodes` (decoded in O(nnz * d_in)).
            threads: threads for this call.

        Returns:
            (..., d_in) float32 for dense codes, (n, d_in) for sparse codes.
        """
        worker = self._worker(threads, False)
        d_in = self.d_in
        if isinstance(f, SparseCodes):
            f.validate()
            codes = f._for_c()
            n = codes.n_rows
            x_hat = np.empty((n, d_in), dtype=np.float32)
            if n:
                lib.sae_encoder_decode_sparse(
                    worker.encoder, n, _arrays.address(codes.offsets),
                    _arrays.address(codes.indices), _arrays.address(codes.values),
                    _arrays.address(x_hat), d_in)
            return x_hat
        rows, ld, lead = _arrays.as_rows(f, self.d_sae, "f")
        n = rows.shape[0]
        x_hat = np.empty((n, d_in), dtype=np.float32)
        if n:
            lib.sae_encoder_decode(worker.encoder, n, _arrays.address(rows), ld,
                                   _arrays.address(x_hat), d_in)
        return x_hat.reshape(lead + (d_in,))

    def reconstruct(self, x, *, threads=None):
        """Encode and decode in one call: ``(x_hat, error)`` with ``error = x - x_hat``.

        Both have the shape of ``x`` (..., d_in) and dtype float32.
        """
        worker = self._worker(threads, False)
        rows, ld, lead = _arrays.as_rows(x, self.d_in, "x")
        n, d_in = rows.shape[0], self.d_in
        x_hat = np.empty((n, d_in), dtype=np.float32)
        error = np.empty((n, d_in), dtype=np.float32)
        if n:
            lib.sae_encoder_reconstruct(worker.encoder, n, _arrays.address(rows), ld,
                                        _arrays.address(x_hat), d_in, _arrays.address(error),
                                        d_in)
        return x_hat.reshape(lead + (d_in,)), error.reshape(lead + (d_in,))

    # ---- files ------------------------------------------------------------------------------

    def save(self, path, format="saelens"):
        """Save into directory ``path`` (created if missing) as "saelens" or "sparsify".

        SAELens takes every architecture (BatchTopK is written as JumpReLU); sparsify only TopK
        with ReLU before top-k and no input normalisation (else :class:`SaeError` code -7).
        """
        if format not in ("saelens", "sparsify"):
            raise ValueError("unknown save format %r; expected 'saelens' or 'sparsify'" % (format,))
        lib.sae_dict_save(self._live(), fspath_bytes(path), FORMATS[format])


def load(path, k=None, format=None, *, threads=0):
    """Load a dictionary from a directory or file.

    Args:
        path: an SAELens or sparsify directory, a dictionary_learning directory or ``ae.pt``,
            an OpenAI or sae-icm ``.pt`` file, or a ``.safetensors`` file with ``cfg.json``
            beside it.
        k: k for files that lack it (sae-icm), or to override the file's.
        format: None / "auto" to detect, or one of "saelens", "sparsify",
            "dictionary_learning", "openai", "sae_icm".
        threads: default threads per call of the dictionary's encoders (0: all CPUs).

    Raises:
        SaeError: the file is missing (code -10 or -4), malformed (-5), ... The message names
            the file and the problem.
    """
    options = _structs.new(_structs.LoadOptions,
                           format=_lookup(FORMATS, format or "auto", "format"),
                           k=0 if k is None else int(k))
    handle = new_handle()
    lib.sae_dict_load(handle, fspath_bytes(path), options)
    return Dictionary(handle, threads=threads)


def detect_format(path):
    """The format :func:`load` would use for ``path`` ("saelens", "sparsify", ...)."""
    fmt = ctypes.c_int32()
    lib.sae_detect_format(fspath_bytes(path), ctypes.byref(fmt))
    return lib.sae_format_name(fmt.value).decode()
