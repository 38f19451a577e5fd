"""Activations of a model (a :class:`sae.Host`) at its hook points: :func:`capture` writes them
to a safetensors file, :func:`loss_recovered` measures how much of the model's next-token loss
a dictionary's reconstruction keeps (include/sae/capture.h). :meth:`sae.Source.from_host`
streams them to a trainer instead."""

import ctypes
import dataclasses
from collections.abc import Mapping

from . import _host_structs as _hs
from . import _structs
from ._lib import fspath_bytes, lib
from .dictionary import Dictionary
from .host import Host, _token_batch
from .source import _hook_id


def _check_host(host):
    if not isinstance(host, Host):
        raise TypeError("host must be a sae.Host, got %s" % type(host).__name__)


def _positive_or_none(name, value):
    if value is not None and not value > 0:  # 0 would select the C default
        raise ValueError("%s must be positive or None, got %r" % (name, value))
    return value or 0


def _tensor_layout(host, hooks):
    """(tensor names, n_stack, hook ids) of ``hooks`` as :func:`capture` takes them."""
    if isinstance(hooks, str):
        hooks = [hooks]
    if not isinstance(hooks, Mapping):
        hooks = list(hooks)
        if not all(isinstance(hook, str) for hook in hooks):
            raise TypeError("a list of hooks names them (a mapping may give hook ids)")
        hooks = {hook: hook for hook in hooks}
    if not hooks:
        raise ValueError("hooks is empty: name at least one hook point")
    groups = list(hooks.values())
    stacked = not isinstance(groups[0], (str, int))
    if any(stacked == isinstance(g, (str, int)) for g in groups):
        raise ValueError("hooks mixes single hook points and lists of them: give every tensor "
                         "a hook point, or every tensor a list of the same length")
    if stacked:
        groups = [list(g) for g in groups]
        n_stack = len(groups[0])
        if n_stack == 0 or any(len(g) != n_stack for g in groups):
            raise ValueError("every tensor must stack the same number (>= 1) of hook points, "
                             "got %s" % [len(g) for g in groups])
    else:
        groups, n_stack = [[g] for g in groups], 0
    ids = [_hook_id(host, hook) for group in groups for hook in group]
    return [str(name) for name in hooks], n_stack, ids


def capture(path, host, tokens, hooks, *, skip_bos=False, seqs_per_batch=None):
    """Run ``tokens`` through ``host`` and write the activations at ``hooks`` to the safetensors
    file ``path``, streamed a batch of sequences at a time and replaced atomically
    (sae_host_capture). Read it back with :func:`sae.load_file` or :meth:`Source.from_files`.

    Args:
        path: the output file (left as it was on any failure).
        host: a :class:`sae.Host`.
        tokens: int array (n_seq, seq_len) (or one sequence, (seq_len,)) of ids.
        hooks: what to write, one float32 tensor each:

            - a hook name, or a list of them: one tensor per hook point, named after it, of
              shape (n_seq, T, d_model);
            - a mapping from tensor name to a hook name: the same, with chosen names;
            - a mapping from tensor name to a list of n hook names (the same n for each):
              those hook points stacked, shape (n_seq, T, n, d_model).

            T is seq_len, or seq_len - 1 with ``skip_bos``. A mapping's values may give hook
            ids for names.
        skip_bos: leave out position 0 of every sequence.
        seqs_per_batch: sequences per forward pass (None: as many as make at most 2048 tokens).

    Raises:
        SaeError: an unknown hook (code -10), a token or hook id out of range (-9), a bad shape
            (-3), a disk error (-5), or the error of the host; an exception raised by a Python
            host's ``forward`` is re-raised as it is.
    """
    _check_host(host)
    names, n_stack, ids = _tensor_layout(host, hooks)
    batch, _ = _token_batch(tokens)
    options = _structs.new(_hs.CaptureOptions, skip_bos=int(bool(skip_bos)),
                           seqs_per_batch=_positive_or_none("seqs_per_batch", seqs_per_batch))
    c_names = (ctypes.c_char_p * len(names))(*[name.encode("utf-8") for name in names])
    c_ids = (ctypes.c_int32 * len(ids))(*ids)
    host.call(lib.sae_host_capture, fspath_bytes(path), host.table, batch.ctypes.data,
              batch.shape[0], batch.shape[1], len(names), c_names, n_stack,
              ctypes.addressof(c_ids), options)


@dataclasses.dataclass(frozen=True)
class LossRecovered:
    """What :func:`loss_recovered` measured (``sae_loss_recovered``; formulas in capture.h).

    Attributes:
        n_tokens: predictions scored, n_seq (seq_len - 1).
        ce_clean: mean next-token cross-entropy of the model (nats).
        ce_spliced: ... with the activations x at the hook replaced by the reconstruction.
        ce_zero: ... with x replaced by 0.
        ce_mean: ... with x replaced by the mean activation.
        kl_spliced, kl_zero, kl_mean: mean KL(clean || run) of the next-token distributions.
        score_zero: (ce_zero - ce_spliced) / (ce_zero - ce_clean) (SAELens ``ce_loss_score``).
        score_mean: (ce_mean - ce_spliced) / (ce_mean - ce_clean).
        kl_score_zero: (kl_zero - kl_spliced) / kl_zero (SAELens ``kl_div_score``).
        kl_score_mean: (kl_mean - kl_spliced) / kl_mean.
    """

    n_tokens: int
    ce_clean: float
    ce_spliced: float
    ce_zero: float
    ce_mean: float
    kl_spliced: float
    kl_zero: float
    kl_mean: float
    score_zero: float
    score_mean: float
    kl_score_zero: float
    kl_score_mean: float


def loss_recovered(dictionary, host, hook, tokens, *, skip_bos=False, seqs_per_batch=None,
                   threads=None):
    """How much of ``host``'s next-token loss on ``tokens`` survives when ``dictionary``'s
    reconstruction replaces the activations at ``hook`` (sae_dict_loss_recovered): the model
    runs clean, spliced, zero-ablated and mean-ablated, a batch of sequences at a time.

    Args:
        dictionary: a :class:`sae.Dictionary` with d_in = the host's d_model.
        host: a :class:`sae.Host`.
        hook: the hook point's name or id.
        tokens: int array (n_seq, seq_len >= 2) (or one sequence) of ids.
        skip_bos: position 0 keeps its clean activations in every run and stays out of the
            mean activation.
        seqs_per_batch: sequences per forward pass (None: at most 2048 tokens and 2^22 logits).
        threads: threads of the encoder (None: the dictionary's ``threads``).

    Returns:
        A :class:`LossRecovered`.

    Raises:
        SaeError: an unknown hook (code -10), a token or hook id out of range (-9), d_in !=
            d_model or seq_len < 2 (-3), logits that are not finite (-6), or the error of the
            host; an exception raised by a Python host's ``forward`` is re-raised as it is.
    """
    if not isinstance(dictionary, Dictionary):
        raise TypeError("dictionary must be a sae.Dictionary, got %s" % type(dictionary).__name__)
    _check_host(host)
    hook_id = _hook_id(host, hook)
    batch, _ = _token_batch(tokens)
    options = _structs.new(_hs.LossRecoveredOptions, skip_bos=int(bool(skip_bos)),
                           seqs_per_batch=_positive_or_none("seqs_per_batch", seqs_per_batch),
                           n_threads=dictionary.threads if threads is None else int(threads))
    result = _structs.new(_hs.LossRecovered)
    host.call(lib.sae_dict_loss_recovered, result, host.table, hook_id, dictionary._live(),
              batch.ctypes.data, batch.shape[0], batch.shape[1], options)
    return LossRecovered(**{field.name: getattr(result, field.name)
                            for field in dataclasses.fields(LossRecovered)})
