"""``Source``: a stream of activation batches (a ``sae_source``) that :meth:`Trainer.fit` and
:func:`sae.evaluate` read in C, from an array, from files on disk, from a ``Synthetic`` or from
a model run as it is read (a :class:`sae.Host`)."""

import contextlib
import ctypes
import os
import threading

import numpy as np

from . import _arrays, _structs
from ._callbacks import CallbackGuard
from ._lib import ECANCELED, SaeError, fspath_bytes, lib, new_handle
from .host import Host, _token_batch
from .synth import Synthetic
from ._handle import NativeHandle


class _SynthProducer:
    """The rows of a :class:`Synthetic` for ``sae_source_from_callback``: ``rows`` of them in
    all (None: endless). Exceptions go to the guard of the C call being run (see
    _callbacks.py) and stop the stream with an error status."""

    def __init__(self, synth, rows):
        self.synth = synth
        self.remaining = rows
        self.guard = None  # set by Source._use for the duration of each C call
        self.fn = _structs.SourceFn(self._produce)

    def _produce(self, user, max_rows, x, ldx, rows_out):
        try:
            n = max_rows if self.remaining is None else min(max_rows, self.remaining)
            if n > 0:
                lib.sae_synth_sample(self.synth._live(), n, x, ldx, None, 0)
            if self.remaining is not None:
                self.remaining -= n
            rows_out[0] = n
            return 0
        except BaseException as exc:  # re-raised by the guard after the call
            self.guard.record(exc)
            return exc.code if isinstance(exc, SaeError) else ECANCELED


def _source_options(**fields):
    return _structs.new(_structs.SourceOptions, **{name: value for name, value in fields.items()
                                                   if value is not None})


class Source(NativeHandle):
    """Rows of width ``d`` delivered in batches (include/sae/source.h): from an array
    (:meth:`from_array`), from safetensors or raw float32 files streamed with bounded memory
    (:meth:`from_files`), from a :class:`Synthetic` generator (:meth:`from_synthetic`), or
    from the activations at a hook point of a model (:meth:`from_host`).

    :meth:`Trainer.fit` and :func:`sae.evaluate` read a Source in C, from where it stands, so
    successive calls continue where the previous one stopped; :meth:`reset` goes back to the
    first row. One pass over the data is an *epoch*: a finite source ends after it (batches
    come back short, then empty), a looping one (``loop=True``) starts the next epoch, which
    with shuffling is a new random order. Shuffling is seeded: the same data, seed and options
    give the same rows whatever the batch sizes.

    Owns its C handle: :meth:`close` (or ``with``) releases it. One thread at a time.
    """

    def __init__(self):
        raise TypeError("make a sae.Source with Source.from_array, Source.from_files, "
                        "Source.from_synthetic or Source.from_host")

    @classmethod
    def _make(cls, create, keep, producer=None, host=None):
        """A Source over the handle ``create(out)`` makes; ``keep`` stays alive with it; the
        C source runs ``host`` (a sae.Host) as it is read."""
        handle = new_handle()
        create(handle)
        self = cls.__new__(cls)
        self._handle = handle.value
        self._keep = keep
        self._producer = producer
        self._host = host
        self._lock = threading.RLock()
        self._busy = 0
        self._d = lib.sae_source_d(self._handle)
        return self

    @classmethod
    def from_array(cls, x, *, loop=False, shuffle=False, seed=0):
        """Rows of an (n, d) array, read in place (a float32 array with contiguous rows is
        borrowed, not copied: do not change it while the source is in use; other dtypes and
        layouts are converted once).

        Args:
            x: (n, d) array.
            loop: start over at the end of each epoch instead of ending.
            shuffle: a fresh uniformly random order of the rows in each epoch.
            seed: seed of the shuffle.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] < 1:
            raise ValueError("x has shape %s, expected (n, d >= 1)" % (x.shape,))
        rows, ld, _ = _arrays.as_rows(x, x.shape[1], "x")
        options = _source_options(loop=int(bool(loop)), shuffle_buffer_rows=int(bool(shuffle)),
                                  seed=int(seed))
        return cls._make(lambda out: lib.sae_source_from_memory(
            out, rows.shape[0], rows.shape[1], _arrays.address(rows), ld, options), rows)

    @classmethod
    def from_files(cls, paths, *, loop=False, shuffle_rows=0, seed=0, tensor=None, raw_d=None,
                   read_chunk_rows=None):
        """Rows of safetensors files or raw float32 files, in the order given.

        Every file is opened and checked now; while reading, one file is open at a time and
        memory stays at ``shuffle_rows + read_chunk_rows`` rows.

        Args:
            paths: a path or a list of paths. A path ending in ``.f32`` or ``.bin`` is raw
                little-endian float32 rows of width ``raw_d``; any other is a safetensors file
                with one floating tensor of shape (..., d), leading dimensions flattened.
            loop: start over at the end of each epoch instead of ending.
            shuffle_rows: 0 for the stored order, else shuffle through a buffer of this many
                rows (each row is delivered once per epoch).
            seed: seed of the shuffle.
            tensor: the tensor to read (default: the file's only tensor, else "x").
            raw_d: row width of raw files (required for them).
            read_chunk_rows: rows read at a time (None: about 1 MiB worth).

        Raises:
            SaeError: a missing file (code -10), a malformed one (-5), shards of different
                widths (-3), ... The message names the file.
        """
        if isinstance(paths, (str, bytes, os.PathLike)):
            paths = [paths]
        encoded = [fspath_bytes(p) for p in paths]
        array = (ctypes.c_char_p * max(len(encoded), 1))(*encoded)
        options = _source_options(loop=int(bool(loop)), shuffle_buffer_rows=int(shuffle_rows),
                                  seed=int(seed), raw_d=raw_d, read_chunk_rows=read_chunk_rows,
                                  tensor_name=None if tensor is None else tensor.encode())
        return cls._make(lambda out: lib.sae_source_from_files(out, array, len(encoded),
                                                               options), None)

    @classmethod
    def from_synthetic(cls, synth, *, rows=None, read_chunk_rows=None):
        """The next rows of a :class:`Synthetic` (kept alive with the source).

        The generator is asked for ``read_chunk_rows`` rows at a time and advances by that
        much; its rows depend only on their index, so the chunk size does not change them.

        Args:
            synth: the generator.
            rows: rows in all before the stream ends (None: it never ends).
            read_chunk_rows: rows asked of the generator at a time (None: about 1 MiB worth).
        """
        if not isinstance(synth, Synthetic):
            raise TypeError("synth must be a sae.Synthetic, got %s" % type(synth).__name__)
        if rows is not None and rows < 0:
            raise ValueError("rows must be >= 0 or None, got %r" % (rows,))
        producer = _SynthProducer(synth, None if rows is None else int(rows))
        options = _source_options(read_chunk_rows=read_chunk_rows)
        return cls._make(lambda out: lib.sae_source_from_callback(
            out, synth.d, producer.fn, None, options), None, producer)

    @classmethod
    def from_host(cls, host, hook, tokens, *, seqs_per_batch=None, skip_bos=False, loop=False,
                  shuffle_rows=0, seed=0):
        """The activations at hook point ``hook`` of ``host``, computed as they are read
        (sae_source_from_host): the model runs ``seqs_per_batch`` sequences at a time and row
        ``(s, t)`` is token t of sequence s, so memory does not grow with the number of
        sequences. An exception raised by a Python host's ``forward`` while the source is read
        (by :meth:`next`, :meth:`Trainer.fit`, :func:`sae.evaluate`) comes back from that call.

        Args:
            host: a :class:`sae.Host` (kept alive with the source; keep it open while the
                source is in use).
            hook: the hook point's name (e.g. ``"resid_post.2"``) or id.
            tokens: int array (n_seq, seq_len) (or one sequence, (seq_len,)) of ids in
                [0, vocab_size); copied.
            seqs_per_batch: sequences per forward pass (None: as many as make at most 2048
                tokens).
            skip_bos: leave out the rows of position 0 (one epoch then has
                n_seq (seq_len - 1) rows).
            loop: run the sequences again for each epoch instead of ending.
            shuffle_rows: 0 for the order (s, t), else shuffle through a buffer of this many
                rows.
            seed: seed of the shuffle.

        Raises:
            SaeError: an unknown hook name (code -10), a hook id or token outside its range
                (-9), a bad shape (-3, e.g. seq_len > max_seq_len).
        """
        if not isinstance(host, Host):
            raise TypeError("host must be a sae.Host, got %s" % type(host).__name__)
        hook_id = _hook_id(host, hook)
        batch, _ = _token_batch(tokens)
        if seqs_per_batch is not None and not seqs_per_batch > 0:  # 0 would be the C default
            raise ValueError("seqs_per_batch must be positive or None, got %r"
                             % (seqs_per_batch,))
        options = _source_options(loop=int(bool(loop)), shuffle_buffer_rows=int(shuffle_rows),
                                  seed=int(seed))
        table = host.table
        return cls._make(lambda out: lib.sae_source_from_host(
            out, table, hook_id, batch.ctypes.data, batch.shape[0], batch.shape[1],
            seqs_per_batch or 0, int(bool(skip_bos)), options), (batch, table), host=host)

    # ---- lifetime ---------------------------------------------------------------------------

    @property
    def closed(self):
        """True after :meth:`close`."""
        return self._handle is None

    def _release(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            lib.sae_source_free(handle)

    def close(self):
        """Release the source. Further calls raise ValueError."""
        with self._lock:
            if self._busy:
                raise RuntimeError("the source is in use by a running fit or evaluate")
            self._release()

    def __repr__(self):
        if self.closed:
            return "<sae.Source closed>"
        rows = self.rows
        return "<sae.Source d=%d rows=%s epoch=%d>" % (self._d, "?" if rows is None else rows,
                                                      self.epoch)

    def _live(self):
        if self._handle is None:
            raise ValueError("the source is closed")
        return self._handle

    @contextlib.contextmanager
    def _use(self, guard):
        """Hold the source for a C call run under ``guard`` (a _callbacks.CallbackGuard); yields
        the handle."""
        with self._lock:
            handle = self._live()
            producer = self._producer
            outer = producer.guard if producer is not None else None
            if producer is not None:
                producer.guard = guard
            host = self._host
            if host is not None:
                host.table  # raises ValueError once the host is closed
                host._guards.append(guard)  # the host's callbacks report to this call
            self._busy += 1
            try:
                yield handle
            finally:
                self._busy -= 1
                if host is not None:
                    host._guards.pop()
                if producer is not None:
                    producer.guard = outer

    @property
    def endless(self):
        """True for a source that never ends and has no epochs (a Synthetic without ``rows``)."""
        return self._producer is not None and self._producer.remaining is None

    # ---- reading ----------------------------------------------------------------------------

    @property
    def d(self):
        """Row width."""
        return self._d

    @property
    def rows(self):
        """Rows per epoch, or None when unknown (a Synthetic source)."""
        with self._lock:
            n = lib.sae_source_rows(self._live())
        return None if n < 0 else n

    @property
    def epoch(self):
        """The epoch being read: 0 during the first pass, +1 at each restart."""
        with self._lock:
            return lib.sae_source_epoch(self._live())

    def next(self, n):
        """The next ``n`` rows as a new (m, d) float32 array: m = n, except at the end of a
        finite source (fewer, then 0)."""
        n = int(n)
        if n < 0:
            raise ValueError("n must be >= 0, got %d" % n)
        out = np.empty((n, self._d), dtype=np.float32)
        got = ctypes.c_int64()
        guard = CallbackGuard()
        with self._use(guard) as handle:
            guard.call(lib.sae_source_next, handle, n, _arrays.address(out), self._d,
                       ctypes.byref(got))
        return out[:got.value]

    def reset(self):
        """Go back to the first row of epoch 0 (the same order as at creation).

        Raises SaeError (code -7) for a Synthetic source, which cannot replay its rows.
        """
        with self._lock:
            lib.sae_source_reset(self._live())


def _hook_id(host, hook):
    """The id of ``hook`` (a name, or an id checked by C) on ``host``."""
    return host.hook_id(hook) if isinstance(hook, str) else int(hook)


@contextlib.contextmanager
def opened(source, d, *, loop, rows=None, read_chunk_rows=None):
    """``source`` as a Source of width ``d`` for the duration of a ``with`` block: a Source as
    it is; a numpy array, a Synthetic (with ``rows`` and ``read_chunk_rows``) or file paths
    (``loop`` for arrays and files) as a new one, closed at the end of the block."""
    if isinstance(source, Source):
        owned = False
    elif isinstance(source, Synthetic):
        source, owned = Source.from_synthetic(source, rows=rows,
                                              read_chunk_rows=read_chunk_rows), True
    elif isinstance(source, np.ndarray):
        if source.ndim != 2 or source.shape[0] == 0:
            raise ValueError("source has shape %s, expected (N >= 1, %d)" % (source.shape, d))
        source, owned = Source.from_array(source, loop=loop), True
    elif isinstance(source, (str, bytes, os.PathLike)) or (
            isinstance(source, (list, tuple)) and source
            and all(isinstance(p, (str, bytes, os.PathLike)) for p in source)):
        source, owned = Source.from_files(source, loop=loop), True
    else:
        raise TypeError("source must be a sae.Source, a numpy array, a sae.Synthetic or file "
                        "paths, got %s" % type(source).__name__)
    try:
        if source.d != d:
            raise ValueError("the source has rows of width %d, expected %d" % (source.d, d))
        yield source
    finally:
        if owned:
            source.close()
