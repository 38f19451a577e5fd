"""``Host``: a language model as libsae reaches it (include/sae/host.h), from C or from Python.

A host runs token batches with *hook points* (named places where a ``(n_tokens, d_model)``
buffer of activations passes by) and, optionally, takes gradients at them. libsae calls it
through a table of callbacks, the ``sae_host``. This module builds that table for a model
written in Python (subclass :class:`Host`), and runs any host, Python or C (such as
:class:`sae.Llama2`), with patches installed at its hook points (:meth:`Host.run`), backward
from a gradient on the logits (:meth:`Host.grad`) or from one at a hook point
(:meth:`Host.grad_from`).
"""

import ctypes
import sys
import traceback
from collections.abc import Mapping

import numpy as np

from . import _arrays, _structs
from . import _host_structs as _hs
from ._callbacks import CallbackGuard
from ._lib import ECANCELED, SaeError, lib


class _HookFailed(Exception):
    """A C hook returned an error status: unwinds a Python host's forward, which then returns
    that status to C unchanged (host.h: "the error of hook unchanged")."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def _status_of(exc):
    return exc.code if isinstance(exc, SaeError) else ECANCELED


def _report(guard, exc, where):
    """Keep ``exc`` for the guarded C call that runs this callback; with none, print it (it
    cannot cross the C frames) and let the status stop the call."""
    if guard is not None:
        guard.record(exc)
    else:
        print("Exception in %s, called from C outside Host.call (the error status stops the "
              "call):" % where, file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return _status_of(exc)


def _token_batch(tokens):
    """``tokens`` as a C-contiguous int32 (n_seq, seq_len) array and the leading shape of the
    outputs (``tokens.shape``: a 1-D sequence stays 1-D)."""
    a = np.asarray(tokens)
    if a.ndim not in (1, 2) or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError("tokens must be a non-empty 1-D or 2-D integer array, got %s %s"
                         % (a.dtype, a.shape))
    batch = np.ascontiguousarray(a.reshape(-1, a.shape[-1]), dtype=np.int32)
    if not np.array_equal(batch, a.reshape(batch.shape)):
        raise ValueError("token ids must fit in int32")
    return batch, a.shape


class _Hook:
    """What a Python host's ``forward`` receives as ``hook``: calls the C hook of this pass."""

    __slots__ = ("_host", "_fn", "_user", "_guard")

    def __init__(self, host, fn_address, user, guard):
        self._host = host
        self._fn = _hs.HookFn(fn_address) if fn_address else None
        self._user = user
        self._guard = guard

    def __call__(self, name, x):
        """Run the hook on ``x`` (..., d_model) at hook point ``name``; returns the activations
        to continue with: ``x`` itself, changed in place, when it is a writeable float32 array
        with unit column stride, else a patched float32 copy of the same shape."""
        host = self._host
        try:
            hook_id = host._ids[name]
        except KeyError:
            raise ValueError("the host has no hook point %r (hook_names: %s)"
                             % (name, ", ".join(host.hook_names))) from None
        if self._fn is None:
            return x
        if self._guard is not None and self._guard.stopping:
            raise _HookFailed(ECANCELED)
        a = np.asarray(x)
        rows, ld, lead = _arrays.as_rows(a, host.d_model, "the activations at %s" % name)
        if not rows.flags.writeable:
            rows, ld = np.array(rows, dtype=np.float32), host.d_model
        status = self._fn(self._user, hook_id, rows.ctypes.data, rows.shape[0], ld)
        if status != 0:
            raise _HookFailed(status)
        if rows.size and np.may_share_memory(rows, a):
            return a
        return rows.reshape(lead + (host.d_model,))


class Host:
    """A model libsae can run: its hook points, dimensions and the ``sae_host`` table of C
    callbacks (include/sae/host.h).

    **Writing a host in Python.** Subclass, call ``super().__init__(hook_names, d_model,
    vocab_size, max_seq_len, n_layers)`` and implement:

    - ``forward(tokens, hook)``: ``tokens`` is an int32 (n_seq, seq_len) array; return the
      logits, (n_seq, seq_len, vocab_size). At each hook point, in the order of the
      computation, pass the activations through ``x = hook(name, x)`` and continue with what it
      returns (``x`` may be (n_seq, seq_len, d_model) or (n_tokens, d_model); row
      ``s * seq_len + t`` is token t of sequence s).
    - optionally ``backward(d_logits, wanted, stop_grad)``, for the batch of the last forward:
      ``d_logits`` (n_seq, seq_len, vocab_size) is the gradient of a loss on the logits,
      ``wanted`` the hook names whose gradient to return, ``stop_grad`` a set of hook names
      whose activations count as constants (the gradient arriving there is still returned
      for them, but none flows on upstream). Return a mapping from every wanted name to its
      gradient, (n_seq, seq_len, d_model) or (n_tokens, d_model). Hooks count as the identity.
    - optionally ``backward_from(seed_hook, seed, wanted, stop_grad)``, the same for the loss
      ``sum(seed * x)``, ``x`` the activations at hook point ``seed_hook`` in the last forward
      and ``seed`` (n_seq, seq_len, d_model) (host.h, ``sae_host_backward_from_fn``): the
      direct-path gradients that the circuits' edges need. ``wanted`` may include
      ``seed_hook`` (its gradient is the seed) and hooks after it (zeros).

    Every libsae function that takes a host then runs it: :meth:`run`, :meth:`grad` and the
    C functions built on ``sae_host_forward`` / ``sae_host_backward``. Call those through
    :meth:`call`, so that an exception raised in ``forward`` or ``backward`` (which cannot cross
    the C frames) stops the C call with an error status and is then re-raised to you.

    A host is used by one thread at a time (it keeps the state of its last forward).
    """

    def __init__(self, hook_names, d_model, vocab_size, max_seq_len, n_layers=0):
        names = tuple(str(name) for name in hook_names)
        self._names_c = (ctypes.c_char_p * max(len(names), 1))(
            *[name.encode("utf-8") for name in names])
        self._forward_c = _hs.HostForwardFn(self._c_forward)
        table = _structs.new(_hs.HostTable, n_hooks=len(names), d_model=int(d_model),
                             vocab_size=int(vocab_size), n_layers=int(n_layers),
                             max_seq_len=int(max_seq_len),
                             hook_names=ctypes.cast(self._names_c,
                                                    ctypes.POINTER(ctypes.c_char_p)),
                             forward=self._forward_c)
        if getattr(self, "backward", None) is not None:
            self._backward_c = _hs.HostBackwardFn(self._c_backward)
            table.backward = self._backward_c
        if getattr(self, "backward_from", None) is not None:
            self._backward_from_c = _hs.HostBackwardFromFn(self._c_backward_from)
            table.backward_from = self._backward_from_c
        lib.sae_host_check(table)  # dimensions, distinct non-empty names
        self._set_table(table)

    def _set_table(self, table):
        """Adopt a filled ``sae_host`` table (Python callbacks or a C host's)."""
        self._table = table
        self._names = tuple(table.hook_names[i].decode("utf-8") for i in range(table.n_hooks))
        self._ids = {name: i for i, name in enumerate(self._names)}
        self._guards = []

    # ---- what subclasses provide ---------------------------------------------------------------

    def forward(self, tokens, hook):
        """Run ``tokens`` (n_seq, seq_len) and return the logits (see the class)."""
        raise NotImplementedError("a Python host implements forward(tokens, hook)")

    #: ``backward(d_logits, wanted, stop_grad) -> {name: gradient}`` in a subclass that has
    #: one (see the class); None: the host has no backward pass.
    backward = None

    #: ``backward_from(seed_hook, seed, wanted, stop_grad) -> {name: gradient}`` in a subclass
    #: that has one (see the class); None: the host has none.
    backward_from = None

    # ---- the model -----------------------------------------------------------------------------

    @property
    def table(self):
        """The ``sae_host`` table (a ctypes structure) to pass to C functions; see :meth:`call`."""
        if self._table is None:
            raise ValueError("the host is closed")
        return self._table

    hook_names = property(lambda self: self._names, doc="The hook point names, by hook id.")
    d_model = property(lambda self: self.table.d_model, doc="Width of the activations.")
    vocab_size = property(lambda self: self.table.vocab_size, doc="Logits per token.")
    n_layers = property(lambda self: self.table.n_layers, doc="Transformer layers.")
    max_seq_len = property(lambda self: self.table.max_seq_len,
                           doc="Longest sequence a forward pass accepts.")
    has_backward = property(lambda self: bool(self.table.backward),
                            doc="Whether the host has a backward pass (:meth:`grad`).")
    has_backward_from = property(lambda self: bool(self.table.backward_from),
                                 doc="Whether the host has a backward pass from a hook point "
                                     "(:meth:`grad_from`).")

    def hook_id(self, name):
        """The id of hook point ``name`` (its index in :attr:`hook_names`); SaeError (code
        ENOTFOUND, listing valid names) if the host has none of that name."""
        hook_id = self._ids.get(name)
        if hook_id is None:
            out = ctypes.c_int32()
            lib.sae_host_find_hook(out, self.table, str(name).encode("utf-8"))
            hook_id = out.value
        return hook_id

    def __repr__(self):
        return "<%s d_model=%d vocab_size=%d hooks=%d>" % (
            type(self).__name__, self.d_model, self.vocab_size, len(self._names))

    # ---- running -------------------------------------------------------------------------------

    def call(self, func, *args):
        """Run the C function ``func(*args)``, which calls this host, and return its result.
        An exception raised by this host's callbacks during the call is re-raised after it
        (else the call's own :class:`SaeError`)."""
        return self._call_with(CallbackGuard(), func, *args)

    def _call_with(self, guard, func, *args):
        self._guards.append(guard)
        try:
            return guard.call(func, *args)
        finally:
            self._guards.pop()

    def run(self, tokens, patches=None, *, logits=True):
        """Run the forward pass on ``tokens`` with ``patches`` installed.

        Args:
            tokens: int array, (seq_len,) or (n_seq, seq_len), ids in [0, vocab_size).
            patches: None, a mapping from hook name to a :class:`sae.Patch` or a list of them,
                or an iterable of ``(hook_name, patch)`` pairs. The patches of one hook point
                apply in the order given, on every forward (sae_patch_apply_list); each one's
                d_in must be the host's d_model.
            logits: False to skip the logits (when only the patches' records matter).

        Returns:
            float32 logits of shape ``tokens.shape + (vocab_size,)``, or None.
        """
        batch, lead = _token_batch(tokens)
        out = np.empty(lead + (self.vocab_size,), np.float32) if logits else None
        guard = CallbackGuard()
        dispatch = _PatchDispatch(self, patches, guard) if patches else None
        self._call_with(guard, lib.sae_host_forward, self.table, batch.ctypes.data,
                        batch.shape[0], batch.shape[1], _arrays.address(out),
                        dispatch.fn if dispatch else _hs.NO_HOOK, None)
        return out

    def grad(self, d_logits, hooks, stop_grad=()):
        """Backward pass for the batch of the last :meth:`run` (sae_host_backward).

        Args:
            d_logits: (n_seq, seq_len, vocab_size) or (seq_len, vocab_size) gradient of a
                loss on the logits of that run (e.g. from :func:`logits_ce`).
            hooks: names of the hook points whose gradient to return.
            stop_grad: names of hook points that pass no gradient upstream.

        Returns:
            dict from each name in ``hooks`` to its float32 gradient, shaped like the
            activations there: ``d_logits.shape[:-1] + (d_model,)``.
        """
        d = np.ascontiguousarray(d_logits, dtype=np.float32)
        if d.ndim not in (2, 3) or d.shape[-1] != self.vocab_size:
            raise ValueError("d_logits has shape %s, expected (n_seq, seq_len, %d)"
                             % (d.shape, self.vocab_size))
        n_seq, seq_len = (1,) + d.shape[:1] if d.ndim == 2 else d.shape[:2]
        grads, pointers, stop = self._gradient_buffers(d.shape[:-1], hooks, stop_grad)
        self.call(lib.sae_host_backward, self.table, n_seq, seq_len, d.ctypes.data,
                  ctypes.addressof(pointers), stop.ctypes.data)
        return grads

    def grad_from(self, seed_hook, seed, hooks, stop_grad=()):
        """Backward pass from a gradient at a hook point, for the batch of the last :meth:`run`
        (sae_host_backward_from): the gradient of ``sum(seed * x)``, ``x`` the activations at
        ``seed_hook``.

        Args:
            seed_hook: name of the hook point of the seed.
            seed: (n_seq, seq_len, d_model) or (seq_len, d_model) float array.
            hooks, stop_grad: as in :meth:`grad`.

        Returns:
            dict from each name in ``hooks`` to its float32 gradient, shaped like ``seed``.
        """
        s = np.ascontiguousarray(seed, dtype=np.float32)
        if s.ndim not in (2, 3) or s.shape[-1] != self.d_model:
            raise ValueError("seed has shape %s, expected (n_seq, seq_len, %d)"
                             % (s.shape, self.d_model))
        n_seq, seq_len = (1,) + s.shape[:1] if s.ndim == 2 else s.shape[:2]
        grads, pointers, stop = self._gradient_buffers(s.shape[:-1], hooks, stop_grad)
        self.call(lib.sae_host_backward_from, self.table, n_seq, seq_len,
                  self.hook_id(seed_hook), s.ctypes.data, ctypes.addressof(pointers),
                  stop.ctypes.data)
        return grads

    def _gradient_buffers(self, lead, hooks, stop_grad):
        """Zeroed gradients of shape ``lead + (d_model,)`` for ``hooks``, the (n_hooks) table of
        their addresses and the stop_grad flags, as sae_host_backward(_from) take them."""
        n_hooks = len(self._names)
        grads = {name: np.zeros(tuple(lead) + (self.d_model,), np.float32) for name in hooks}
        pointers = (ctypes.c_void_p * max(n_hooks, 1))()
        for name, g in grads.items():
            pointers[self.hook_id(name)] = g.ctypes.data
        stop = np.zeros(max(n_hooks, 1), np.uint8)
        for name in stop_grad:
            stop[self.hook_id(name)] = 1
        return grads, pointers, stop

    # ---- the C callbacks of a Python host ------------------------------------------------------

    def _c_forward(self, user, tokens, n_seq, seq_len, logits, hook, hook_user):
        guard = self._guards[-1] if self._guards else None
        try:
            if guard is not None and guard.stopping:
                return ECANCELED
            batch = _arrays.copy_from(tokens, n_seq * seq_len, np.int32).reshape(n_seq, seq_len)
            out = self.forward(batch, _Hook(self, hook, hook_user, guard))
            if logits:
                want = (n_seq, seq_len, self.vocab_size)
                z = np.asarray(out)
                if z.size != n_seq * seq_len * self.vocab_size or z.shape[-1] != want[-1]:
                    raise ValueError("%s.forward returned logits of shape %s, expected %s"
                                     % (type(self).__name__, z.shape, want))
                view = np.ctypeslib.as_array((ctypes.c_float * z.size).from_address(logits))
                view[:] = z.reshape(-1)
            return 0
        except _HookFailed as exc:
            return exc.status
        except BaseException as exc:
            return _report(guard, exc, "%s.forward" % type(self).__name__)

    def _c_backward(self, user, n_seq, seq_len, d_logits, d_hooks, stop_grad):
        def args():
            d = _arrays.copy_from(d_logits, n_seq * seq_len * self.vocab_size, np.float32)
            return (d.reshape(n_seq, seq_len, self.vocab_size),)
        return self._run_backward("backward", args, n_seq, seq_len, d_hooks, stop_grad)

    def _c_backward_from(self, user, n_seq, seq_len, seed_hook, seed, d_hooks, stop_grad):
        def args():
            s = _arrays.copy_from(seed, n_seq * seq_len * self.d_model, np.float32)
            return self._names[seed_hook], s.reshape(n_seq, seq_len, self.d_model)
        return self._run_backward("backward_from", args, n_seq, seq_len, d_hooks, stop_grad)

    def _run_backward(self, method, args, n_seq, seq_len, d_hooks, stop_grad):
        """Call ``self.<method>(*args(), wanted, stops)`` and copy its gradients into the C
        buffers ``d_hooks``; the status for C."""
        guard = self._guards[-1] if self._guards else None
        where = "%s.%s" % (type(self).__name__, method)
        try:
            if guard is not None and guard.stopping:
                return ECANCELED
            n, width = n_seq * seq_len, self.d_model
            names = self._names
            wanted = tuple(name for i, name in enumerate(names) if d_hooks[i])
            stops = frozenset(name for i, name in enumerate(names)
                              if stop_grad and ctypes.c_uint8.from_address(stop_grad + i).value)
            grads = getattr(self, method)(*args(), wanted, stops)
            for name in wanted:
                if name not in grads:
                    raise ValueError("%s returned no gradient for %r" % (where, name))
                g = np.asarray(grads[name], dtype=np.float32)
                if g.size != n * width or g.shape[-1] != width:
                    raise ValueError("%s returned a gradient of shape %s for %r, expected "
                                     "(%d, %d, %d)" % (where, g.shape, name, n_seq, seq_len,
                                                       width))
                buf = (ctypes.c_float * (n * width)).from_address(d_hooks[self._ids[name]])
                np.ctypeslib.as_array(buf)[:] = g.reshape(-1)
            return 0
        except BaseException as exc:
            return _report(guard, exc, where)


class _PatchDispatch:
    """The hook of one :meth:`Host.run`: applies the patches of each hook id in order."""

    def __init__(self, host, patches, guard):
        pairs = []
        items = patches.items() if isinstance(patches, Mapping) else patches
        for name, value in items:
            group = [value] if not isinstance(value, (list, tuple)) else list(value)
            pairs.extend((name, patch) for patch in group)
        by_id = {}
        for name, patch in pairs:
            if patch.d_in != host.d_model:
                raise ValueError("a patch for hook %r has d_in %d; the host's d_model is %d"
                                 % (name, patch.d_in, host.d_model))
            by_id.setdefault(host.hook_id(name), []).append(patch)
        self.patches = by_id  # keeps the Patch objects (and their handles) alive
        self.lists = {hook_id: (len(group), (ctypes.c_void_p * len(group))(
                          *[patch._live() for patch in group]))
                      for hook_id, group in by_id.items()}
        self.guard = guard
        self.fn = _hs.HookFn(self._apply)

    def _apply(self, user, hook_id, x, n_tokens, ld):
        entry = self.lists.get(hook_id)
        if entry is None:
            return 0
        try:
            lib.sae_patch_apply_list(ctypes.addressof(entry[1]), entry[0], x, n_tokens, ld)
            return 0
        except BaseException as exc:
            self.guard.record(exc)
            return _status_of(exc)


# ---- metrics on logits (host.h) ----------------------------------------------------------------

def logits_ce(logits, targets):
    """Mean cross-entropy at ``targets`` and its gradient on the logits (sae_logits_ce).

    Args:
        logits: (..., vocab_size) float array.
        targets: int array of shape ``logits.shape[:-1]``; a negative target leaves its row out
            (e.g. ``targets[..., t] = tokens[..., t + 1]`` and -1 at the last position).

    Returns:
        ``(ce, d_logits)``: the mean over counted rows (nats) and its gradient, shaped like
        ``logits``.
    """
    z = np.ascontiguousarray(logits, dtype=np.float32)
    t = np.ascontiguousarray(targets, dtype=np.int32)
    if z.ndim < 1 or t.shape != z.shape[:-1]:
        raise ValueError("targets has shape %s; logits %s needs %s"
                         % (t.shape, z.shape, z.shape[:-1]))
    d = np.empty_like(z)
    ce = ctypes.c_float()
    lib.sae_logits_ce(ce, d.ctypes.data, z.ctypes.data, t.ctypes.data, t.size, z.shape[-1])
    return ce.value, d


def logits_diff(logits, token_a, token_b):
    """Mean over sequences of ``logits[..., -1, token_a] - logits[..., -1, token_b]`` (the last
    position) and its gradient on the logits (sae_logits_diff).

    Args:
        logits: (n_seq, seq_len, vocab_size) or (seq_len, vocab_size) float array.
        token_a, token_b: token ids.

    Returns:
        ``(diff, d_logits)``, ``d_logits`` shaped like ``logits``.
    """
    z = np.ascontiguousarray(logits, dtype=np.float32)
    if z.ndim not in (2, 3):
        raise ValueError("logits has shape %s, expected (n_seq, seq_len, vocab)" % (z.shape,))
    n_seq, seq_len = (1,) + z.shape[:1] if z.ndim == 2 else z.shape[:2]
    d = np.empty_like(z)
    diff = ctypes.c_float()
    lib.sae_logits_diff(diff, d.ctypes.data, z.ctypes.data, n_seq, seq_len, z.shape[-1],
                        int(token_a), int(token_b))
    return diff.value, d
