"""``Trainer``: train a standard or TopK SAE with Adam (a ``sae_trainer``)."""

import ctypes
import dataclasses
import operator
import threading

import numpy as np

from . import _arrays, _structs
from ._callbacks import CallbackGuard
from ._lib import ECANCELED, SaeError, fspath_bytes, lib, new_handle
from .dictionary import Dictionary
from .source import opened
from ._handle import NativeHandle

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
    (= mse + l1_coefficient * l1 + auxk_coefficient * aux + ortho_lambda * ortho), mse, l1,
    l1_coefficient, aux, fvu, l0 (mean positive codes per row), n_dead, lr (learning rate used),
    grad_norm (before clipping), ortho (the orthogonality penalty of the step's subset before
    ortho_lambda; 0 when off). ``dataclasses.asdict(m)`` gives a dict."""})

_PROGRESS_FIELDS = [(name, ctype) for name, ctype in _structs.FitProgress._fields_
                    if name != "struct_size"]

FitProgress = dataclasses.make_dataclass(
    "FitProgress",
    [(name, float if ctype is ctypes.c_double else int) for name, ctype in _PROGRESS_FIELDS],
    frozen=True,
    namespace={"__module__": __name__, "__doc__": """Where a :meth:`Trainer.fit` stands
    (``sae_fit_progress``, trainer.h); one attribute per C field:

    source_ended (1 once a finite source has run dry), steps_done (steps taken by this fit so
    far), steps_total (steps it was asked to take), tokens (rows trained on by this fit),
    elapsed_seconds, tokens_per_second."""})


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


class Trainer(NativeHandle):
    """Trains a standard (ReLU + L1) or TopK sparse autoencoder with Adam, one batch per
    :meth:`step` (include/sae/trainer.h, MATH.md "Training losses").

    Every convention on which SAELens, dictionary_learning and sparsify differ is an option,
    and a ``preset`` fills each option left unset so that the defaults reproduce one library
    (the table is in trainer.h)::

        with sae.Trainer("topk", d_in=512, d_sae=4096, k=32, preset="sparsify") as t:
            t.fit(activations, steps=1000, batch_size=4096)
            d = t.dictionary()             # a sae.Dictionary: encode, save, ...
            t.save_checkpoint("run.ckpt")  # sae.Trainer.load_checkpoint("run.ckpt") resumes

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

    sae-icm's orthogonality penalty ``ortho_lambda * sum_{i>j in S} (d_i . d_j)^2`` over the
    decoder rows of a random subset S (``ortho_subset`` rows drawn afresh each step; None: 1024,
    -1: every feature) is an option of every preset and architecture, and so is AdamW's
    ``weight_decay``. ``preset="sae_icm"`` is sae-icm's fine-tuning recipe (relative-L2
    reconstruction, ortho_lambda 1e-4, AdamW lr 5e-5, betas (0.9, 0.95), weight decay 0.01,
    200 warm-up steps then a cosine to 0 at ``total_steps``, gradient clipping at 1; trainer.h)::

        with sae.Trainer(dictionary=d, preset="sae_icm", total_steps=2000,
                         ortho_lambda=1e-3) as t:
            t.fit(activations, steps=2000, batch_size=1024)
            print(t.metrics().ortho)

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
            preset: "saelens", "dictionary_learning", "sparsify" or "sae_icm".
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
        self._adopt(handle)

    def _adopt(self, handle):
        """Take ownership of the ``sae_trainer *`` in ``handle`` (a ``c_void_p``)."""
        self._handle = handle.value
        # Reentrant: a fit callback may call back into the trainer (dictionary(), a checkpoint)
        # between steps.
        self._lock = threading.RLock()
        self._fitting = False
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

    @classmethod
    def load_checkpoint(cls, path):
        """A trainer restored from a checkpoint of :meth:`save_checkpoint`
        (``sae_trainer_load``): continuing it gives bit-identical results to the run that wrote
        it, with the thread count saved in it.

        Raises:
            SaeError: a missing file (code -10), not a checkpoint or malformed (-5), a newer
                format version (-7), inconsistent shapes (-3) or values (-6), invalid options
                (-1). Everything is checked before use; the message names the problem.
        """
        handle = new_handle()
        lib.sae_trainer_load(handle, fspath_bytes(path), None)
        trainer = cls.__new__(cls)
        trainer._adopt(handle)
        return trainer

    def save_checkpoint(self, path):
        """Write the whole training state to ``path`` (``sae_trainer_save``): weights, Adam
        moments, counters, schedules, activation scale and options, in one safetensors file.
        Crash-safe: an existing file is replaced only by a complete new one."""
        with self._lock:
            lib.sae_trainer_save(self._live(), fspath_bytes(path))

    def _release(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            lib.sae_trainer_free(handle)

    def close(self):
        """Release the trainer. Further calls raise ValueError."""
        with self._lock:
            if self._fitting:
                raise RuntimeError("cannot close the trainer from inside its fit callback")
            self._release()

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
        rows, ld = self._batch(x)
        m = self._metrics
        with self._lock:
            lib.sae_trainer_step(self._live(), rows.shape[0], _arrays.address(rows), ld, m)
            self._last = TrainMetrics(*[getattr(m, name) for name in _METRIC_NAMES])
        return self._last

    def _batch(self, x):
        """``x`` as (rows, ld) for a C call: an (n, d_in) batch, read in place when it can be."""
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError("x has shape %s, expected (n, %d)" % (x.shape, self._d_in))
        rows, ld, _ = _arrays.as_rows(x, self._d_in, "x")
        return rows, ld

    def resample(self, x):
        """Resample the dead features now from the rows of ``x`` (``sae_trainer_resample``,
        dictionary_learning's resample_neurons; standard SAEs only) and return how many were
        resampled: each takes a row drawn with probability proportional to its reconstruction
        error, as encoder column and unit decoder row, with its Adam moments reset."""
        rows, ld = self._batch(x)
        count = ctypes.c_int64()
        with self._lock:
            lib.sae_trainer_resample(self._live(), rows.shape[0], _arrays.address(rows), ld,
                                     ctypes.byref(count))
        return count.value

    def estimate_scale(self, x):
        """Add the rows of ``x`` to the estimate of the activation scale
        s = sqrt(d_in) / mean ||x|| (``sae_trainer_estimate_scale``; needs
        ``activation_scaling="on"`` and no step taken yet) and return the estimate so far.
        Without it the first step estimates s from its own batch."""
        rows, ld = self._batch(x)
        with self._lock:
            lib.sae_trainer_estimate_scale(self._live(), rows.shape[0], _arrays.address(rows),
                                           ld)
        return self.activation_scale

    @property
    def activation_scale(self):
        """The scale s the trainer multiplies its batches by: 1.0 when activation scaling is
        off or s is not known yet. Exported dictionaries have s folded into their weights."""
        with self._lock:
            return float(lib.sae_trainer_activation_scale(self._live()))

    def fit(self, source, steps, batch_size=4096, callback=None):
        """Take ``steps`` steps on batches of ``batch_size`` rows read from ``source``, in C
        (``sae_trainer_fit``): bit for bit the loop of :meth:`step` calls on the same rows.

        Args:
            source: where the rows come from:

                * an (N, d_in) array, read in order from row 0 on every call and looping
                  (a float32 array with contiguous rows is read in place);
                * a :class:`Synthetic` of dimension d_in: its next ``steps * batch_size``
                  rows;
                * a file path or a list of them (see :meth:`Source.from_files`), read in
                  order and looping;
                * a :class:`Source`, read from where it stands (for shuffling, one pass
                  only, or to continue across calls). A finite Source that runs dry ends the
                  fit early, without its last partial batch (``t.steps`` tells how far it
                  got).
            steps: number of steps (>= 0); None: up to the trainer's ``total_steps``,
                counting the steps already taken (so a loaded checkpoint finishes its run).
            batch_size: rows per step (>= 1).
            callback: called as ``callback(progress, metrics)`` after every step, with a
                :class:`FitProgress` and the step's :class:`TrainMetrics`. A true return value
                (``True``, any non-zero number, a non-empty object) stops the fit after that
                step; ``None``, ``False`` or 0 go on. An exception raised by the callback
                also stops it, and fit re-raises it. Ctrl-C stops after the current step and
                raises KeyboardInterrupt. The steps taken stay taken in every case; the
                callback may use the trainer (e.g. :meth:`dictionary`,
                :meth:`save_checkpoint`), but not close it.

        Returns:
            The :class:`TrainMetrics` of the last step taken, or None when none was.
        """
        if steps is not None:
            steps = operator.index(steps)
        batch_size = operator.index(batch_size)
        if (steps is not None and steps < 0) or batch_size < 1:
            raise ValueError("fit needs steps >= 0 and batch_size >= 1 (got %s, %d)"
                             % (steps, batch_size))
        run = _FitRun(callback)
        options = _structs.new(_structs.FitOptions, steps=steps or 0, batch_size=batch_size,
                               report_every=1)
        # A Synthetic is asked for one batch at a time: it advances by the rows trained on.
        with opened(source, self._d_in, loop=True, read_chunk_rows=batch_size) as src, \
                src._use(run.guard) as src_handle, self._lock:
            handle = self._live()
            if steps == 0:  # C reads 0 as "up to total_steps"
                return None
            self._fitting = True
            try:
                run.guard.call(lib.sae_trainer_fit, handle, src_handle, options, None, run.fn,
                               None)
            except SaeError as exc:
                if exc.code != ECANCELED or not run.cancelled:
                    raise
            finally:
                self._fitting = False
                if run.steps_taken:
                    self._last = run.metrics()
        return self._last if run.steps_taken else None


class _FitRun:
    """The progress callback of one :meth:`Trainer.fit`: keeps the last step's metrics, calls
    the user's callback, and stops on its request, its exception or Ctrl-C (_callbacks.py)."""

    def __init__(self, callback):
        self.callback = callback
        self.guard = CallbackGuard()
        self.cancelled = False
        self.steps_taken = 0
        self._last = _structs.new(_structs.TrainMetrics)
        self.fn = _structs.FitFn(self._on_step)

    def metrics(self):
        """The :class:`TrainMetrics` of the last step reported."""
        return TrainMetrics(*[getattr(self._last, name) for name in _METRIC_NAMES])

    def _on_step(self, user, progress, metrics):
        try:
            ctypes.memmove(ctypes.addressof(self._last), metrics, ctypes.sizeof(self._last))
            self.steps_taken = progress.contents.steps_done
            if self.guard.stopping:
                return 1
            if self.callback is None:
                return 0
            p = progress.contents
            stop = self.callback(FitProgress(*[getattr(p, name) for name, _ in
                                               _PROGRESS_FIELDS]), self.metrics())
            self.cancelled = bool(stop)
            return 1 if self.cancelled else 0
        except BaseException as exc:  # re-raised by the guard after the call
            self.guard.record(exc)
            return 1
