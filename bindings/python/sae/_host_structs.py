"""ctypes mirrors of the structs and callback types of host.h, patch.h, capture.h, the host-based
part of supervised.h, and graph.h.

The same conventions as :mod:`sae._structs` (field by field, in order, sizes fixed by the ABI;
fill ``struct_size`` with :func:`sae._structs.new`), in a module of their own so that the
model-facing part of the bindings stays together.
"""

import ctypes
from ctypes import POINTER, c_char_p, c_double, c_float, c_int32, c_int64, c_uint32, c_void_p

# ---- hosts (host.h) ----------------------------------------------------------------------------

#: ``sae_hook_fn``: ``sae_status fn(void *user, int32_t hook_id, float *x, int64_t n_tokens,
#: int64_t ld)``.
HookFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int32, c_void_p, c_int64, c_int64)
#: The NULL hook (ctypes takes no None for a function pointer argument).
NO_HOOK = HookFn()

#: ``sae_host_forward_fn``: ``sae_status fn(void *user, const int32_t *tokens, int64_t n_seq,
#: int64_t seq_len, float *logits, sae_hook_fn hook, void *hook_user)``. The hook arrives as a
#: plain address (``c_void_p``): :data:`HookFn` turns it back into a callable.
HostForwardFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_void_p, c_int64, c_int64, c_void_p,
                                 c_void_p, c_void_p)

#: ``sae_host_backward_fn``: ``sae_status fn(void *user, int64_t n_seq, int64_t seq_len,
#: const float *d_logits, float *const *d_hooks, const uint8_t *stop_grad)``.
HostBackwardFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int64, c_int64, c_void_p,
                                  POINTER(c_void_p), c_void_p)

#: ``sae_host_backward_from_fn``: ``sae_status fn(void *user, int64_t n_seq, int64_t seq_len,
#: int32_t seed_hook, const float *seed, float *const *d_hooks, const uint8_t *stop_grad)``.
HostBackwardFromFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int64, c_int64, c_int32, c_void_p,
                                      POINTER(c_void_p), c_void_p)


class HostTable(ctypes.Structure):
    """``sae_host`` (host.h): the callback table of a model."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_hooks", c_int32),
        ("d_model", c_int64),
        ("vocab_size", c_int64),
        ("n_layers", c_int64),
        ("max_seq_len", c_int64),
        ("hook_names", POINTER(c_char_p)),
        ("forward", HostForwardFn),
        ("backward", HostBackwardFn),
        ("user", c_void_p),
        ("backward_from", HostBackwardFromFn),
    ]


# ---- patches (patch.h) -------------------------------------------------------------------------

#: ``sae_patch_kind_id`` values by name.
PATCH_KINDS = {"record": 0, "splice": 1, "ablate": 2, "clamp": 3, "steer": 4, "edit": 5}
#: ``sae_record_flag`` bits.
RECORD_ACTIVATIONS, RECORD_CODES = 1, 2


class PatchOptions(ctypes.Structure):
    """``sae_patch_options`` (patch.h): settings shared by every patch."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_threads", c_int32),
        ("max_tokens", c_int64),
        ("allocator", c_void_p),
    ]


class PatchRecord(ctypes.Structure):
    """``sae_patch_record`` (patch.h): a view of a recording patch's buffer."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("what", c_uint32),
        ("n_tokens", c_int64),
        ("nnz", c_int64),
        ("d_in", c_int64),
        ("activations", c_void_p),
        ("offsets", c_void_p),
        ("indices", c_void_p),
        ("values", c_void_p),
    ]


# ---- capture and loss recovered (capture.h) ----------------------------------------------------

class CaptureOptions(ctypes.Structure):
    """``sae_capture_options`` (capture.h): settings of ``sae_host_capture``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("skip_bos", c_int32),
        ("seqs_per_batch", c_int64),
        ("allocator", c_void_p),
    ]


class LossRecoveredOptions(ctypes.Structure):
    """``sae_loss_recovered_options`` (capture.h): settings of ``sae_dict_loss_recovered``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_threads", c_int32),
        ("seqs_per_batch", c_int64),
        ("skip_bos", c_int32),
        ("reserved", c_uint32),
        ("allocator", c_void_p),
    ]


class LossRecovered(ctypes.Structure):
    """``sae_loss_recovered`` (capture.h): what ``sae_dict_loss_recovered`` measured."""

    _fields_ = [("struct_size", c_uint32), ("reserved", c_uint32), ("n_tokens", c_int64)] + [
        (name, c_double) for name in ("ce_clean", "ce_spliced", "ce_zero", "ce_mean",
                                      "kl_spliced", "kl_zero", "kl_mean", "score_zero",
                                      "score_mean", "kl_score_zero", "kl_score_mean")]


class Prompts(ctypes.Structure):
    """``sae_prompts`` (supervised.h): prompts of a task and the hook point of its node."""

    _fields_ = [("struct_size", c_uint32), ("hook_id", c_int32), ("n_prompts", c_int64),
                ("tokens", c_void_p), ("offsets", c_void_p), ("answer", c_void_p),
                ("wrong", c_void_p)]


class Approximation(ctypes.Structure):
    """``sae_approximation`` (supervised.h): sufficiency and necessity of a dictionary."""

    _fields_ = [("struct_size", c_uint32), ("reserved", c_uint32)] + [
        (name, c_double) for name in ("clean", "ablated", "sufficient", "necessary",
                                      "sufficiency", "necessity")]


# ---- circuits (graph.h) ------------------------------------------------------------------------

#: ``sae_graph_progress_fn`` (graph.h): ``int fn(void *user, int64_t done, int64_t total)``.
GraphProgressFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int64, c_int64)

#: ``sae_graph_method`` names.
GRAPH_METHODS = {"ig": 0, "atp": 1, "exact": 2}
#: ``sae_graph_ablation`` and ``sae_graph_errors`` names.
GRAPH_ABLATIONS = {"mean": 0, "zero": 1}
GRAPH_ERRORS = {"nodes": 0, "keep": 1, "remove": 2}


class PromptPairs(ctypes.Structure):
    """``sae_prompt_pairs`` (graph.h)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),
        ("n_pairs", c_int64),
        ("offsets", c_void_p),
        ("clean_tokens", c_void_p),
        ("patch_tokens", c_void_p),
        ("clean_answers", c_void_p),
        ("patch_answers", c_void_p),
    ]


class GraphOptions(ctypes.Structure):
    """``sae_graph_options`` (graph.h)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("method", c_int32),
        ("aggregation", c_int32),
        ("ig_steps", c_int32),
        ("node_threshold", c_float),
        ("edge_threshold", c_float),
        ("flags", c_uint32),
        ("n_threads", c_int32),
        ("batch_size", c_int64),
        ("metric", c_void_p),
        ("metric_user", c_void_p),
        ("progress", GraphProgressFn),
        ("progress_user", c_void_p),
        ("allocator", c_void_p),
    ]


class GraphInfo(ctypes.Structure):
    """``sae_graph_info`` (graph.h)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("method", c_int32),
        ("aggregation", c_int32),
        ("ig_steps", c_int32),
        ("n_pairs", c_int64),
        ("n_positions", c_int64),
        ("node_threshold", c_float),
        ("edge_threshold", c_float),
        ("metric_clean", c_double),
        ("metric_patch", c_double),
        ("n_nodes", c_int64),
        ("n_edges", c_int64),
        ("n_hooks", c_int32),
        ("reserved", c_uint32),
    ]


class GraphArrays(ctypes.Structure):
    """``sae_graph_arrays`` (graph.h): borrowed arrays of a graph."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),
        ("n_nodes", c_int64),
        ("n_edges", c_int64),
        ("node_hooks", c_void_p),
        ("node_positions", c_void_p),
        ("node_features", c_void_p),
        ("node_effects", c_void_p),
        ("edge_sources", c_void_p),
        ("edge_targets", c_void_p),
        ("edge_weights", c_void_p),
    ]


class GraphDotOptions(ctypes.Structure):
    """``sae_graph_dot_options`` (graph.h)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("node_threshold", c_float),
        ("edge_threshold", c_float),
        ("max_nodes", c_int32),
    ]


class GraphEvalOptions(ctypes.Structure):
    """``sae_graph_eval_options`` (graph.h)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("ablation", c_int32),
        ("errors", c_int32),
        ("n_threads", c_int32),
        ("batch_size", c_int64),
        ("metric", c_void_p),
        ("metric_user", c_void_p),
        ("allocator", c_void_p),
    ]


class GraphEval(ctypes.Structure):
    """``sae_graph_eval`` (graph.h): faithfulness and completeness of a circuit."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),
        ("n_nodes", c_int64),
        ("metric_full", c_double),
        ("metric_empty", c_double),
        ("metric_circuit", c_double),
        ("metric_complement", c_double),
        ("faithfulness", c_double),
        ("completeness", c_double),
    ]


# The C layouts on 64-bit targets: a mismatch means the mirror drifted from the headers.
if ctypes.sizeof(c_void_p) == 8:
    for _cls, _size in {HostTable: 80, PatchOptions: 24, PatchRecord: 64, CaptureOptions: 24,
                        LossRecoveredOptions: 32, LossRecovered: 104, Prompts: 48,
                        Approximation: 56, PromptPairs: 56, GraphOptions: 80, GraphInfo: 80,
                        GraphArrays: 80, GraphDotOptions: 16, GraphEvalOptions: 48,
                        GraphEval: 64}.items():
        assert ctypes.sizeof(_cls) == _size, (_cls.__name__, ctypes.sizeof(_cls), _size)
