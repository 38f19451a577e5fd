"""``Trainer``: train a standard or TopK SAE with Adam (a ``sae_trainer``)."""

import ctypes
import dataclasses
import operator
import threading

import numpy as np

from . import _arrays, _structs
from ._lib import lib, new_handle
from .dictionary import Dictionary
from .synth import Synthetic

_KINDS = {name: kind for name, _, kind in _structs.TRAINER_OPTIONS}
_CTYPES = {name: ctype for name, ctype, _ in _structs.TRAINER_OPTIONS}
_METRIC_FIELDS = [(name, ctype) for name, ctype in _structs.TrainMetrics._fields_
                  if name != "struct_size"]
_METRIC_NAMES = [name for name, _ in _METRIC_FIELDS]

TrainMetrics = dataclasses.make_dataclass(
    "TrainMetrics",
    [(name, float if ctype is ctypes.c_double else int) for name, ctype in _METRIC_FIELDS],
    frozen=True,
    namespace={"__module__": __name__, "__doc__": """What one training step measured
    (``sae_train_metrics``, trainer.h); one attribute per C field:

    skipped (1 when a non-finite batch was skipped), step (its index, from 0), loss
    (= mse + l1_coefficient * l1 + auxk_coefficient * aux), mse, l1, l1_coefficient, aux, fvu,
    l0 (mean positive codes per row), n_dead, lr (learning rate used), grad_norm (before
    clipping). ``dataclasses.asdict(m)`` gives a dict."""})


def _integer(name, ctype, value):
    """``value`` as an int that fits ``ctype``; integral floats (``1e7``) are accepted."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError("trainer option %s must be an integer, got %r" % (name, value)) from None
    bits = 8 * ctypes.sizeof(ctype)
    signed = ctype(-1).value < 0
    low, high = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= value <= high:
        raise ValueError("trainer option %s = %d is out of range [%d, %d]"
                         % (name, value, low, high))
    return value


def _to_c(name, value):
    """The C value of option ``name`` given in Python as ``value`` (not None)."""
    kind = _KINDS[name]
    if isinstance(kind, dict):
        if isinstance(value, bool) and "on" in kind:  # switches: True / False
            value = "on" if value else "off"
        if isinstance(value, str):
            try:
                value = kind[value.lower()]
            except KeyError:
                raise ValueError("unknown %s %r; expected one of %s"
                                 % (name, value, ", ".join(map(repr, kind)))) from None
    elif kind == _structs.OFF:
        if value < 0:
            raise ValueError("trainer option %s = %r is negative (0 is an explicit zero, None "
                             "the preset's value)" % (name, value))
        if value == 0:
            value = _structs.TRAIN_OFF
    elif kind == _structs.POSITIVE and not value > 0:
        raise ValueError("trainer option %s must be positive, got %r (None: the preset's "
                         "value)" % (name, value))
    ctype = _CTYPES[name]
    return float(value) if ctype is ctypes.c_double else _integer(name, ctype, value)


def _from_c(name, value):
    """The Python value of option ``name`` whose C value is ``value`` (inverse of _to_c)."""
    kind = _KINDS[name]
    if isinstance(kind, dict):
        for key, number in kind.items():
            if number == value:
                return key
        return value
    if kind == _structs.OFF and value < 0:
        return type(value)(0)
    return value


def _options(values):
    """A ``sae_trainer_options`` with ``values`` ({field: Python value}) applied."""
    options = _structs.new(_structs.TrainerOptions)
    for name, value in values.items():
        if _KINDS.get(name, _structs.INTERNAL) == _structs.INTERNAL:
            raise TypeError("unknown trainer option %r" % (name,))
        if value is not None:
            setattr(options, name, _to_c(name, value))
    return options


class Trainer:
    """Trains a standard (ReLU + L1) or TopK sparse autoencoder with Adam, one batch per
    :meth:`step` (include/sae/trainer.h, MATH.md "Training losses").

    Every convention on which SAELens, dictionary_learning and sparsify differ is an option,
    and a ``preset`` fills each option left unset so that the defaults reproduce one library
    (the table is in trainer.h)::

        with sae.Trainer("topk", d_in=512, d_sae=4096, k=32, preset="sparsify") as t:
            t.fit(activations, steps=1000, batch_size=4096)
            d = t.dictionary()             # a sae.Dictionary: encode, save, ...

    Options (``**overrides``) are the fields of ``sae_trainer_options`` by name, e.g.
    ``lr=1e-4, mse="fvu", decoder_constraint="unit_exact", total_steps=10000``:

    * omitted or ``None``: the preset's value;
    * enum fields take their C names in lowercase without the prefix (``"fvu"`` for
      SAE_MSE_FVU, ``"geometric_median"`` for SAE_BDEC_GEOMETRIC_MEDIAN), or the C value;
      ``rescale`` also takes True / False;
    * fields that C can switch off with SAE_TRAIN_OFF (beta1, beta2, adam_eps, clip_norm,
      lr_end, warmup_steps, decay_steps, l1_coefficient, l1_warmup_steps, auxk_coefficient,
      dead_window, threshold_start_step) take ``0`` as that explicit zero: ``warmup_steps=0`` is
      no warm-up, ``clip_norm=0`` no clipping. Negative values are refused;
    * lr, decoder_init_norm, k_aux and threshold_beta must be positive;
    * the rest (seed, total_steps, flags, n_threads, ...) are passed as they are.

    ``threads`` is ``n_threads`` (None: the library default, all CPUs). :meth:`options` returns
    the resolved settings under the same names and conventions, so
    ``Trainer(**t.options())`` makes an identically configured trainer.

    ``Trainer(dictionary=d, ...)`` continues from a standard or TopK :class:`Dictionary`'s
    weights (copied): arch, d_in, d_sae and k default to the dictionary's, b_dec is kept unless
    ``b_dec_init`` asks otherwise, and the training conventions come from the options.

    Errors the library reports raise :class:`SaeError` with its message. Owns its C handle:
    :meth:`close` (or ``with``) releases it. Calls are serialised by a lock; a trainer is meant
    to be used by one thread at a time.
    """

    def __init__(self, arch=None, d_in=None, d_sae=None, k=None, *, dictionary=None,
                 preset="saelens", seed=0, threads=None, **overrides):
        """Make the trainer (see the class docstring for the options).

        Args:
            arch: "standard" or "topk" (default: the dictionary's, else "standard").
            d_in, d_sae: input width and number of features (default: the dictionary's).
            k: TopK: features kept per row (default: the dictionary's).
            dictionary: a :class:`Dictionary` to continue from (``sae_trainer_create_from``).
            preset: "saelens", "dictionary_learning" or "sparsify".
            seed: seed of the weight initialisation.
            threads: threads per call (None: the library default).
            **overrides: any other ``sae_trainer_options`` field by name.
        """
        if threads is not None:
            if overrides.get("n_threads") is not None:
                raise TypeError("give threads or n_threads, not both")
            overrides["n_threads"] = threads
        options = _options(dict(overrides, arch=arch, d_in=d_in, d_sae=d_sae, k=k,
                                preset=preset, seed=seed))
        handle = new_handle()
        if dictionary is None:
            lib.sae_trainer_create(handle, options)
        elif isinstance(dictionary, Dictionary):
            lib.sae_trainer_create_from(handle, dictionary._live(), options)
        else:
            raise TypeError("dictionary must be a sae.Dictionary, got %s"
                            % type(dictionary).__name__)
        self._handle = handle.value
        self._lock = threading.Lock()
        self._metrics = _structs.new(_structs.TrainMetrics)
        self._last = None
        resolved = self.options()
        self._arch, self._d_in = resolved["arch"], resolved["d_in"]
        self._d_sae, self._k = resolved["d_sae"], resolved["k"]
        self._threads = resolved["n_threads"]

    # ---- lifetime ---------------------------------------------------------------------------

    @property
    def closed(self):
        """True after :meth:`close`."""
        return self._handle is None

    def close(self):
        """Release the trainer. Further calls raise ValueError."""
        with self._lock:
            handle, self._handle = self._handle, None
            if handle:
                lib.sae_trainer_free(handle)

    def __del__(self):
        try:
            handle, self._handle = self._handle, None
            if handle:
                lib.sae_trainer_free(handle)
        except Exception:  # interpreter shutdown, or __init__ failed before the handle
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        raise TypeError("a sae.Trainer cannot be pickled or copied")

    def __repr__(self):
        state = " closed" if self.closed else " steps=%d" % self.steps
        k = " k=%d" % self._k if self._k else ""
        return "<sae.Trainer %s d_in=%d d_sae=%d%s%s>" % (self._arch, self._d_in, self._d_sae,
                                                          k, state)

    def _live(self):
        if self._handle is None:
            raise ValueError("the trainer is closed")
        return self._handle

    # ---- settings and state -----------------------------------------------------------------

    @property
    def arch(self):
        """"standard" or "topk"."""
        return self._arch

    @property
    def d_in(self):
        """Input width."""
        return self._d_in

    @property
    def d_sae(self):
        """Number of features."""
        return self._d_sae

    @property
    def k(self):
        """TopK: features kept per row; None for standard SAEs."""
        return self._k or None

    def options(self):
        """The settings after the preset filled the unset ones, as a dict of
        ``sae_trainer_options`` fields in the conventions of the constructor (enum names,
        0 for an explicit zero)."""
        options = _structs.new(_structs.TrainerOptions)
        with self._lock:
            lib.sae_trainer_get_options(self._live(), options)
        return {name: _from_c(name, getattr(options, name))
                for name, _, kind in _structs.TRAINER_OPTIONS if kind != _structs.INTERNAL}

    @property
    def steps(self):
        """Steps taken so far."""
        with self._lock:
            return lib.sae_trainer_steps(self._live())

    @property
    def since_fired(self):
        """(d_sae,) int64 dead-rule counters (steps or tokens since each feature last fired), a
        copy. Assign a (d_sae,) array of non-negative integers to replace them (resuming a
        run, or marking features dead)."""
        with self._lock:
            return _arrays.copy_from(lib.sae_trainer_since_fired(self._live()), self._d_sae,
                                     np.int64)

    @since_fired.setter
    def since_fired(self, counts):
        counts = np.asarray(counts)
        if counts.shape != (self._d_sae,) or not np.issubdtype(counts.dtype, np.integer):
            raise ValueError("since_fired must be %d integers, got %s of shape %s"
                             % (self._d_sae, counts.dtype, counts.shape))
        counts = np.ascontiguousarray(counts, dtype=np.int64)
        with self._lock:
            lib.sae_trainer_set_since_fired(self._live(), _arrays.address(counts))

    def metrics(self):
        """The :class:`TrainMetrics` of the last step, or None before the first."""
        return self._last

    def dictionary(self):
        """The current weights as a new :class:`Dictionary` (a copy; ``sae_trainer_export``).

        TopK: with k and the training conventions as dictionary flags, and the inference
        threshold once its EMA has started.
        """
        handle = new_handle()
        with self._lock:
            lib.sae_trainer_export(self._live(), handle)
        return Dictionary(handle, threads=self._threads)

    # ---- training ---------------------------------------------------------------------------

    def step(self, x):
        """One optimiser step on the batch ``x`` and its :class:`TrainMetrics`.

        ``x`` is (n, d_in), n >= 1. A float32 array with contiguous rows (possibly
        row-strided, e.g. ``big[:, :d_in]``) is read in place; other dtypes and layouts are
        converted once. A batch with NaN or Inf raises :class:`SaeError` (code -6) and changes
        nothing, unless ``flags=sae.TRAIN_SKIP_NONFINITE`` (then ``metrics.skipped == 1``).
        """
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError("x has shape %s, expected (n, %d)" % (x.shape, self._d_in))
        rows, ld, _ = _arrays.as_rows(x, self._d_in, "x")
        m = self._metrics
        with self._lock:
            lib.sae_trainer_step(self._live(), rows.shape[0], _arrays.address(rows), ld, m)
            self._last = TrainMetrics(*[getattr(m, name) for name in _METRIC_NAMES])
        return self._last

    def fit(self, source, steps, batch_size=4096, callback=None):
        """Take ``steps`` steps on batches of ``batch_size`` rows from ``source``.

        Args:
            source: an (N, d_in) array, read in order from row 0 and looping (a float32 array
                with contiguous rows is read in place), or a :class:`Synthetic` of dimension
                d_in, sampled ``batch_size`` rows per step.
            steps: number of steps (>= 0).
            batch_size: rows per step (>= 1).
            callback: called as ``callback(metrics)`` after every step; returning True stops.

        Returns:
            The :class:`TrainMetrics` of the last step taken (None when ``steps`` is 0).
        """
        steps, batch_size = operator.index(steps), operator.index(batch_size)
        if steps < 0 or batch_size < 1:
            raise ValueError("fit needs steps >= 0 and batch_size >= 1 (got %d, %d)"
                             % (steps, batch_size))
        batches = self._batches(source, batch_size)
        metrics = None
        for _ in range(steps):
            metrics = self.step(next(batches))
            if callback is not None and callback(metrics):
                break
        return metrics

    def _batches(self, source, batch_size):
        """An endless iterator of (batch_size, d_in) float32 batches of ``source``; the source
        is checked now, not at the first batch."""
        d_in = self._d_in
        if isinstance(source, Synthetic):
            if source.d != d_in:
                raise ValueError("the Synthetic source has d = %d, the trainer d_in = %d"
                                 % (source.d, d_in))
            return _synthetic_batches(source, np.empty((batch_size, d_in), np.float32))
        if not isinstance(source, np.ndarray):
            raise TypeError("source must be a numpy array or a sae.Synthetic, got %s"
                            % type(source).__name__)
        if source.ndim != 2 or source.shape[0] == 0:
            raise ValueError("source has shape %s, expected (N >= 1, %d)"
                             % (source.shape, d_in))
        rows, _, _ = _arrays.as_rows(source, d_in, "source")
        return _array_batches(rows, batch_size)


def _synthetic_batches(synth, buf):
    """Fresh rows of ``synth`` in ``buf`` for every batch (each consumed before the next)."""
    while True:
        yield synth.sample(buf.shape[0], out=buf)


def _array_batches(rows, batch_size):
    """Rows [pos, pos + batch_size) modulo N, pos advancing by batch_size: a view when the
    batch does not wrap around, else one gather into a reused buffer."""
    n = rows.shape[0]
    offsets = np.arange(batch_size)
    index = np.empty(batch_size, dtype=np.intp)
    buf = None
    pos = 0
    while True:
        if pos + batch_size <= n:
            yield rows[pos:pos + batch_size]
        else:
            if buf is None:
                buf = np.empty((batch_size, rows.shape[1]), dtype=np.float32)
            np.remainder(offsets + pos, n, out=index)
            yield np.take(rows, index, axis=0, out=buf)
        pos = (pos + batch_size) % n
