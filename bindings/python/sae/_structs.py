"""ctypes mirrors of the public libsae structs.

Each class repeats its C struct field by field, in the same order and with the same types
(include/sae/*.h). The versioned structs start with ``struct_size``; :func:`new` fills it with
``ctypes.sizeof`` so that the library reads exactly the fields these bindings know about.
The layouts have no implicit padding (STYLE.md), so the sizes below are fixed by the ABI.
"""

import ctypes
from ctypes import (c_char_p, c_double, c_float, c_int32, c_int64, c_uint32, c_uint64,
                    c_void_p)

#: Most dimensions a safetensors tensor may have (SAE_MAX_DIMS).
MAX_DIMS = 8

#: Architecture names <-> ``sae_arch`` values (dict.h).
ARCHS = {"standard": 0, "topk": 1, "batchtopk": 2, "jumprelu": 3, "gated": 4}


class DictConfig(ctypes.Structure):
    """``sae_dict_config`` (dict.h): settings of a dictionary, fixed at creation."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("arch", c_int32),
        ("d_in", c_int64),
        ("d_sae", c_int64),
        ("k", c_int64),
        ("flags", c_uint32),
        ("input_norm", c_int32),
        ("act_scale", c_float),
        ("reserved", c_uint32),
        ("model_name", c_char_p),
        ("hook_name", c_char_p),
    ]


class DictWeights(ctypes.Structure):
    """``sae_dict_weights`` (dict.h): pointers to the weights, canonical layout."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),
        ("W_enc", c_void_p),
        ("b_enc", c_void_p),
        ("W_dec", c_void_p),
        ("b_dec", c_void_p),
        ("threshold", c_void_p),
        ("b_gate", c_void_p),
        ("b_mag", c_void_p),
        ("r_mag", c_void_p),
    ]


class EncoderOptions(ctypes.Structure):
    """``sae_encoder_options`` (encoder.h): settings of an encoder."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_threads", c_int32),
        ("max_rows", c_int64),
        ("flags", c_uint32),
        ("reserved", c_uint32),
        ("allocator", c_void_p),
    ]


class LoadOptions(ctypes.Structure):
    """``sae_load_options`` (io.h): settings of ``sae_dict_load``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("format", c_int32),
        ("k", c_int64),
        ("allocator", c_void_p),
    ]


class TensorInfo(ctypes.Structure):
    """``sae_tensor_info`` (safetensors.h): one tensor of a file, borrowed from its reader."""

    _fields_ = [
        ("name", c_char_p),
        ("dtype", c_int32),
        ("ndim", c_int32),
        ("shape", c_int64 * MAX_DIMS),
        ("numel", c_int64),
        ("data", c_void_p),
        ("nbytes", c_uint64),
    ]


class SynthOptions(ctypes.Structure):
    """``sae_synth_options`` (synth.h): settings of a synthetic data generator."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("correlated", c_uint32),
        ("d", c_int64),
        ("n_features", c_int64),
        ("n_active", c_double),
        ("decay", c_double),
        ("noise_std", c_double),
        ("batch_size", c_int64),
        ("seed", c_uint64),
        ("n_threads", c_int32),
        ("reserved", c_uint32),
        ("allocator", c_void_p),
    ]


# ---- sae_trainer_options (trainer.h) ---------------------------------------------------------
#
# The enums of trainer.h, name -> C value; the Python names are the C names in lowercase
# without their prefix ("preset" is 0: the preset decides).
PRESETS = {"saelens": 0, "dictionary_learning": 1, "sparsify": 2}
SWITCH = {"preset": 0, "on": 1, "off": 2}
LR_SCHEDULES = {"preset": 0, "constant": 1, "cosine": 2}
LR_WARMUPS = {"preset": 0, "from_zero": 1, "saelens": 2}
MSE_VARIANTS = {"preset": 0, "sum": 1, "fvu": 2, "normalized": 3}
L1_VARIANTS = {"preset": 0, "decoder_norm": 1, "plain": 2, "normalized": 3}
AUXK_VARIANTS = {"preset": 0, "saelens": 1, "sparsify": 2, "dictionary_learning": 3}
DEAD_RULES = {"preset": 0, "steps": 1, "tokens_before": 2, "tokens_after": 3, "steps_after": 4}
DECODER_CONSTRAINTS = {"preset": 0, "free": 1, "unit_exact": 2, "unit_eps": 3, "unit_raw": 4}
B_DEC_INITS = {"preset": 0, "zero": 1, "mean": 2, "geometric_median": 3, "keep": 4}
WEIGHT_INITS = {"preset": 0, "uniform_tied": 1, "normal_tied": 2, "sparsify": 3, "untied": 4}
JUMPRELU_SPARSITY = {"preset": 0, "step": 1, "tanh": 2, "target_l0": 3}
GATED_AUX = {"preset": 0, "attached": 1, "detached": 2}
BATCHTOPK_THRESHOLD = {"preset": 0, "saelens": 1, "dictionary_learning": 2}
TOPK_RELU = {"preset": 0, "first": 1, "after": 2}

#: ``SAE_TRAIN_SKIP_NONFINITE``, the one bit of ``sae_trainer_options.flags``.
TRAIN_SKIP_NONFINITE = 1 << 0
#: ``SAE_TRAIN_OFF``: an explicit zero in fields where 0 means "the preset's value".
TRAIN_OFF = -1

# How sae.Trainer reads a Python value of each field (None always means "the preset's value",
# which is C's 0):
#   PLAIN    the value as it is; 0 is an ordinary value (a seed, "unknown" total_steps, ...);
#   OFF      0 is an explicit zero, sent as SAE_TRAIN_OFF; negative values are refused;
#   POSITIVE must be > 0 (C has no explicit zero for it);
#   a dict   an enum: one of its names, or a C value;
#   INTERNAL set by the bindings, not an option.
PLAIN, OFF, POSITIVE, INTERNAL = "plain", "off", "positive", "internal"

#: Every field of ``sae_trainer_options`` in C order: (name, ctype, how Python reads it).
#: A field appended to the C struct is one line appended here; sae.Trainer then accepts it by
#: name and reports it in ``options()``.
TRAINER_OPTIONS = (
    ("struct_size", c_uint32, INTERNAL),
    ("arch", c_int32, ARCHS),
    ("d_in", c_int64, PLAIN),
    ("d_sae", c_int64, PLAIN),
    ("k", c_int64, PLAIN),
    ("preset", c_int32, PRESETS),
    ("n_threads", c_int32, PLAIN),
    ("seed", c_uint64, PLAIN),
    ("flags", c_uint32, PLAIN),
    ("init", c_int32, WEIGHT_INITS),
    ("decoder_init_norm", c_double, POSITIVE),
    ("b_dec_init", c_int32, B_DEC_INITS),
    ("lr_schedule", c_int32, LR_SCHEDULES),
    ("lr", c_double, POSITIVE),
    ("beta1", c_double, OFF),
    ("beta2", c_double, OFF),
    ("adam_eps", c_double, OFF),
    ("clip_norm", c_double, OFF),
    ("lr_warmup", c_int32, LR_WARMUPS),
    ("mse", c_int32, MSE_VARIANTS),
    ("lr_end", c_double, OFF),
    ("total_steps", c_int64, PLAIN),
    ("warmup_steps", c_int64, OFF),
    ("decay_steps", c_int64, OFF),
    ("l1", c_int32, L1_VARIANTS),
    ("topk_relu", c_int32, TOPK_RELU),
    ("l1_coefficient", c_double, OFF),
    ("l1_warmup_steps", c_int64, OFF),
    ("rescale", c_int32, SWITCH),
    ("auxk", c_int32, AUXK_VARIANTS),
    ("auxk_coefficient", c_double, OFF),
    ("k_aux", c_int64, POSITIVE),
    ("dead_rule", c_int32, DEAD_RULES),
    ("decoder_constraint", c_int32, DECODER_CONSTRAINTS),
    ("dead_window", c_int64, OFF),
    ("threshold_beta", c_double, POSITIVE),
    ("threshold_start_step", c_int64, OFF),
    ("allocator", c_void_p, INTERNAL),
    ("resample_steps", c_int64, OFF),
    ("activation_scaling", c_int32, SWITCH),
    ("b_dec_input", c_int32, SWITCH),
    ("jumprelu_sparsity", c_int32, JUMPRELU_SPARSITY),
    ("jumprelu_log_threshold", c_int32, SWITCH),
    ("gated_aux", c_int32, GATED_AUX),
    ("batchtopk_threshold", c_int32, BATCHTOPK_THRESHOLD),
    ("jumprelu_bandwidth", c_double, POSITIVE),
    ("jumprelu_init_threshold", c_double, OFF),
    ("jumprelu_tanh_scale", c_double, POSITIVE),
    ("target_l0", c_double, POSITIVE),
)


class TrainerOptions(ctypes.Structure):
    """``sae_trainer_options`` (trainer.h): settings of a trainer (see :data:`TRAINER_OPTIONS`)."""

    _fields_ = [(name, ctype) for name, ctype, _ in TRAINER_OPTIONS]


class TrainMetrics(ctypes.Structure):
    """``sae_train_metrics`` (trainer.h): what one training step measured."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("skipped", c_uint32),
        ("step", c_int64),
        ("loss", c_double),
        ("mse", c_double),
        ("l1", c_double),
        ("l1_coefficient", c_double),
        ("aux", c_double),
        ("fvu", c_double),
        ("l0", c_double),
        ("n_dead", c_int64),
        ("lr", c_double),
        ("grad_norm", c_double),
    ]


class FitOptions(ctypes.Structure):
    """``sae_fit_options`` (trainer.h): settings of ``sae_trainer_fit``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),
        ("steps", c_int64),
        ("batch_size", c_int64),
        ("report_every", c_int64),
    ]


class FitProgress(ctypes.Structure):
    """``sae_fit_progress`` (trainer.h): where a call to ``sae_trainer_fit`` stands."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("source_ended", c_uint32),
        ("steps_done", c_int64),
        ("steps_total", c_int64),
        ("tokens", c_int64),
        ("elapsed_seconds", c_double),
        ("tokens_per_second", c_double),
    ]


#: ``sae_fit_fn`` (trainer.h): ``int fn(void *user, const sae_fit_progress *,
#: const sae_train_metrics *)``; non-zero stops the fit.
FitFn = ctypes.CFUNCTYPE(c_int32, c_void_p, ctypes.POINTER(FitProgress),
                         ctypes.POINTER(TrainMetrics))


# ---- sources and evaluation (source.h, eval.h) ---------------------------------------------------

class SourceOptions(ctypes.Structure):
    """``sae_source_options`` (source.h): settings of a source."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("loop", c_int32),
        ("seed", c_uint64),
        ("shuffle_buffer_rows", c_int64),
        ("read_chunk_rows", c_int64),
        ("raw_d", c_int64),
        ("tensor_name", c_char_p),
        ("allocator", c_void_p),
    ]


#: ``sae_source_fn`` (source.h): ``sae_status fn(void *user, int64_t max_rows, float *x,
#: int64_t ldx, int64_t *rows_out)``.
SourceFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int64, c_void_p, c_int64,
                            ctypes.POINTER(c_int64))

#: ``SAE_EVAL_DENSITY_BINS``, ``SAE_EVAL_DENSITY_LOG10_MIN``, ``SAE_EVAL_DENSITY_BIN_WIDTH``.
EVAL_DENSITY_BINS, EVAL_DENSITY_LOG10_MIN, EVAL_DENSITY_BIN_WIDTH = 20, -10.0, 0.5


class EvalOptions(ctypes.Structure):
    """``sae_eval_options`` (eval.h): settings of ``sae_dict_evaluate``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_threads", c_int32),
        ("max_rows", c_int64),
        ("block_rows", c_int64),
        ("dense_threshold", c_double),
        ("encode_flags", c_uint32),
        ("reserved", c_uint32),
        ("allocator", c_void_p),
    ]


class EvalResult(ctypes.Structure):
    """``sae_eval_result`` (eval.h): what ``sae_dict_evaluate`` measured."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),
        ("rows", c_int64),
        ("d_sae", c_int64),
        ("mse", c_double),
        ("fvu", c_double),
        ("explained_variance", c_double),
        ("l0", c_double),
        ("relative_reconstruction_bias", c_double),
        ("shrinkage", c_double),
        ("dense_threshold", c_double),
        ("n_dead", c_int64),
        ("n_dense", c_int64),
        ("density_histogram", c_int64 * EVAL_DENSITY_BINS),
    ]


# The C layouts (64-bit targets): a mismatch here means the mirror drifted from the headers.
# sae_trainer_options and sae_train_metrics grow often: tests/test_trainer.py compares their
# sizes with the library's at run time instead.
_EXPECTED_SIZES = {DictConfig: 64, DictWeights: 72, EncoderOptions: 32, LoadOptions: 24,
                   TensorInfo: 104, SynthOptions: 80, FitOptions: 32, FitProgress: 48,
                   SourceOptions: 56, EvalOptions: 48, EvalResult: 256}
if ctypes.sizeof(c_void_p) == 8:
    for _cls, _size in _EXPECTED_SIZES.items():
        assert ctypes.sizeof(_cls) == _size, (_cls.__name__, ctypes.sizeof(_cls), _size)


# ---- hosts and circuits (host.h, graph.h) --------------------------------------------------------

#: ``sae_hook_fn`` (host.h): ``sae_status fn(void *user, int32_t hook_id, float *x,
#: int64_t n_tokens, int64_t ld)``.
HookFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int32, c_void_p, c_int64, c_int64)
#: ``sae_host_forward_fn``: ``(user, tokens, n_seq, seq_len, logits, hook, hook_user)``.
HostForwardFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_void_p, c_int64, c_int64, c_void_p,
                                 HookFn, c_void_p)
#: ``sae_host_backward_fn``: ``(user, n_seq, seq_len, d_logits, d_hooks, stop_grad)``.
HostBackwardFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int64, c_int64, c_void_p,
                                  ctypes.POINTER(c_void_p), c_void_p)
#: ``sae_host_backward_from_fn``: ``(user, n_seq, seq_len, seed_hook, seed, d_hooks,
#: stop_grad)``.
HostBackwardFromFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int64, c_int64, c_int32, c_void_p,
                                      ctypes.POINTER(c_void_p), c_void_p)


class Host(ctypes.Structure):
    """``sae_host`` (host.h): the callback table of a model."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("n_hooks", c_int32),
        ("d_model", c_int64),
        ("vocab_size", c_int64),
        ("n_layers", c_int64),
        ("max_seq_len", c_int64),
        ("hook_names", ctypes.POINTER(c_char_p)),
        ("forward", HostForwardFn),
        ("backward", HostBackwardFn),
        ("user", c_void_p),
        ("backward_from", HostBackwardFromFn),
    ]


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


def new(cls, **fields):
    """A zeroed ``cls`` (the ``*_INIT`` value) with ``struct_size`` set and ``fields`` applied."""
    value = cls()
    value.struct_size = ctypes.sizeof(cls)
    for name, field_value in fields.items():
        setattr(value, name, field_value)
    return value
