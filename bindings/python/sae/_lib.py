"""Find libsae.so, declare the C functions the bindings call, turn errors into exceptions.

The library is looked up, in order:

1. the path in the ``SAE_LIBRARY`` environment variable (an error if it does not load);
2. ``libsae.so*`` in this package's directory;
3. the system: ``ctypes.util.find_library("sae")``, then the SONAME ``libsae.so.0.1``.

Every function the package uses is declared once, in :data:`_SIGNATURES`. Functions that return a
``sae_status`` get an ``errcheck`` that raises :class:`SaeError` with the library's per-thread
message. Handles are ``c_void_p``; buffers are passed as ``c_void_p`` addresses.
"""

import ctypes
import ctypes.util
import glob
import os
from ctypes import (POINTER, c_char_p, c_double, c_float, c_int32, c_int64, c_uint32,
                    c_uint64, c_void_p)

from . import _host_structs, _structs

#: The libsae version these bindings were written for (SAE_VERSION_MAJOR, SAE_VERSION_MINOR).
BINDINGS_VERSION = (0, 1)

#: SONAME of the library the bindings were written for.
_SONAME = "libsae.so.%d.%d" % BINDINGS_VERSION


class SaeError(Exception):
    """An error reported by libsae.

    Attributes:
        code: the negative ``sae_status`` value (``-1`` EINVAL ... ``-10`` ENOTFOUND).
        status: the library's static text for ``code`` (``sae_status_str``), e.g. "shape mismatch".
        message: the detailed per-thread message (``sae_last_error``), e.g.
            ``"W_dec has shape [64, 32], expected [256, 64]"``.
    """

    def __init__(self, code, message, status=None):
        self.code = int(code)
        self.message = message
        self.status = status if status is not None else status_str(self.code)
        super().__init__(self.code, message)

    def __str__(self):
        if self.message:
            return "%s (%s, %d)" % (self.message, self.status, self.code)
        return "%s (%d)" % (self.status, self.code)


status_t = c_int32
#: ``SAE_ECANCELED``: a callback asked to stop.
ECANCELED = -8
_handle = c_void_p
_ptr = c_void_p  # any buffer, passed as an address

# name: (restype, argtypes). Functions whose restype is status_t get the raising errcheck.
_SIGNATURES = {
    # core.h
    "sae_status_str": (c_char_p, [status_t]),
    "sae_last_error": (c_char_p, []),
    "sae_clear_error": (None, []),
    "sae_version_number": (c_uint32, []),
    "sae_version_string": (c_char_p, []),
    "sae_default_threads": (c_int32, []),
    "sae_blas_kernels": (c_char_p, []),
    # dict.h
    "sae_dict_create": (status_t, [POINTER(_handle), POINTER(_structs.DictConfig),
                                   POINTER(_structs.DictWeights), _ptr]),
    "sae_dict_free": (None, [_handle]),
    "sae_dict_get_config": (status_t, [_handle, POINTER(_structs.DictConfig)]),
    "sae_dict_get_weights": (status_t, [_handle, POINTER(_structs.DictWeights)]),
    "sae_dict_arch": (c_int32, [_handle]),
    "sae_dict_d_in": (c_int64, [_handle]),
    "sae_dict_d_sae": (c_int64, [_handle]),
    "sae_dict_k": (c_int64, [_handle]),
    "sae_dict_decoder_norms": (_ptr, [_handle]),
    "sae_arch_name": (c_char_p, [c_int32]),
    # encoder.h
    "sae_encoder_create": (status_t, [POINTER(_handle), _handle,
                                      POINTER(_structs.EncoderOptions)]),
    "sae_encoder_free": (None, [_handle]),
    "sae_encoder_encode": (status_t, [_handle, c_int64, _ptr, c_int64, _ptr, c_int64,
                                      _ptr, c_int64]),
    "sae_encoder_encode_sparse": (status_t, [_handle, c_int64, _ptr, c_int64, _handle]),
    "sae_encoder_decode": (status_t, [_handle, c_int64, _ptr, c_int64, _ptr, c_int64]),
    "sae_encoder_decode_sparse": (status_t, [_handle, c_int64, _ptr, _ptr, _ptr, _ptr,
                                             c_int64]),
    "sae_encoder_reconstruct": (status_t, [_handle, c_int64, _ptr, c_int64, _ptr, c_int64,
                                           _ptr, c_int64]),
    "sae_codes_create": (status_t, [POINTER(_handle), _ptr]),
    "sae_codes_free": (None, [_handle]),
    "sae_codes_rows": (c_int64, [_handle]),
    "sae_codes_nnz": (c_int64, [_handle]),
    "sae_codes_offsets": (_ptr, [_handle]),
    "sae_codes_indices": (_ptr, [_handle]),
    "sae_codes_values": (_ptr, [_handle]),
    # io.h
    "sae_dict_load": (status_t, [POINTER(_handle), c_char_p, POINTER(_structs.LoadOptions)]),
    "sae_detect_format": (status_t, [c_char_p, POINTER(c_int32)]),
    "sae_dict_save": (status_t, [_handle, c_char_p, c_int32]),
    "sae_format_name": (c_char_p, [c_int32]),
    # safetensors.h
    "sae_st_open": (status_t, [POINTER(_handle), c_char_p]),
    "sae_st_close": (None, [_handle]),
    "sae_st_count": (c_int64, [_handle]),
    "sae_st_tensor_at": (POINTER(_structs.TensorInfo), [_handle, c_int64]),
    "sae_st_find": (POINTER(_structs.TensorInfo), [_handle, c_char_p]),
    "sae_st_metadata": (c_char_p, [_handle, c_char_p]),
    "sae_st_to_f32": (status_t, [POINTER(_structs.TensorInfo), _ptr, c_int64]),
    "sae_dtype_size": (c_int32, [c_int32]),
    "sae_dtype_name": (c_char_p, [c_int32]),
    "sae_st_writer_create": (status_t, [POINTER(_handle)]),
    "sae_st_writer_free": (None, [_handle]),
    "sae_st_writer_add": (status_t, [_handle, c_char_p, c_int32, c_int32, POINTER(c_int64),
                                     _ptr]),
    "sae_st_writer_set_metadata": (status_t, [_handle, c_char_p, c_char_p]),
    "sae_st_writer_write": (status_t, [_handle, c_char_p]),
    # trainer.h
    "sae_trainer_create": (status_t, [POINTER(_handle), POINTER(_structs.TrainerOptions)]),
    "sae_trainer_create_from": (status_t, [POINTER(_handle), _handle,
                                           POINTER(_structs.TrainerOptions)]),
    "sae_trainer_free": (None, [_handle]),
    "sae_trainer_step": (status_t, [_handle, c_int64, _ptr, c_int64,
                                    POINTER(_structs.TrainMetrics)]),
    "sae_trainer_export": (status_t, [_handle, POINTER(_handle)]),
    "sae_trainer_get_options": (status_t, [_handle, POINTER(_structs.TrainerOptions)]),
    "sae_trainer_steps": (c_int64, [_handle]),
    "sae_trainer_since_fired": (_ptr, [_handle]),
    "sae_trainer_set_since_fired": (status_t, [_handle, _ptr]),
    "sae_trainer_resample": (status_t, [_handle, c_int64, _ptr, c_int64, POINTER(c_int64)]),
    "sae_trainer_estimate_scale": (status_t, [_handle, c_int64, _ptr, c_int64]),
    "sae_trainer_activation_scale": (c_float, [_handle]),
    "sae_trainer_save": (status_t, [_handle, c_char_p]),
    "sae_trainer_load": (status_t, [POINTER(_handle), c_char_p, _ptr]),
    "sae_trainer_fit": (status_t, [_handle, _handle, POINTER(_structs.FitOptions),
                                   POINTER(_structs.FitProgress), _structs.FitFn, c_void_p]),
    # source.h
    "sae_source_from_memory": (status_t, [POINTER(_handle), c_int64, c_int64, _ptr, c_int64,
                                          POINTER(_structs.SourceOptions)]),
    "sae_source_from_files": (status_t, [POINTER(_handle), POINTER(c_char_p), c_int64,
                                         POINTER(_structs.SourceOptions)]),
    "sae_source_from_callback": (status_t, [POINTER(_handle), c_int64, _structs.SourceFn,
                                            c_void_p, POINTER(_structs.SourceOptions)]),
    "sae_source_free": (None, [_handle]),
    "sae_source_next": (status_t, [_handle, c_int64, _ptr, c_int64, POINTER(c_int64)]),
    "sae_source_reset": (status_t, [_handle]),
    "sae_source_d": (c_int64, [_handle]),
    "sae_source_rows": (c_int64, [_handle]),
    "sae_source_epoch": (c_int64, [_handle]),
    # eval.h
    "sae_dict_evaluate": (status_t, [POINTER(_structs.EvalResult), _ptr, _handle, _handle,
                                     POINTER(_structs.EvalOptions)]),
    # supervised.h
    "sae_supervised_create": (status_t, [POINTER(_handle), _ptr, c_int64, c_int64, c_int64,
                                         _ptr, c_int64, c_int32, _ptr,
                                         POINTER(_structs.SupervisedOptions)]),
    "sae_supervised_free": (None, [_handle]),
    "sae_supervised_d": (c_int64, [_handle]),
    "sae_supervised_n_attributes": (c_int32, [_handle]),
    "sae_supervised_n_values": (c_int32, [_handle, c_int32]),
    "sae_supervised_n_codes": (c_int64, [_handle]),
    "sae_supervised_code_index": (c_int64, [_handle, c_int32, c_int32]),
    "sae_supervised_bias": (_ptr, [_handle]),
    "sae_supervised_codes": (_ptr, [_handle]),
    "sae_supervised_reconstruct": (status_t, [_handle, _ptr, c_int64, _ptr, c_int64, c_int64]),
    "sae_supervised_edit": (status_t, [_handle, _ptr, c_int64, c_int64, c_int32, _ptr, _ptr]),
    "sae_supervised_weights": (status_t, [_handle, _ptr, c_int64, _ptr, c_int64, c_int64]),
    "sae_supervised_to_dict": (status_t, [_handle, POINTER(_handle), _ptr]),
    "sae_feature_f1": (status_t, [_ptr, _ptr, _ptr, c_int64, _ptr, c_int64, c_int64, c_int64,
                                  _ptr, c_int64, c_int32, _ptr, _ptr]),
    "sae_feature_f1_top": (status_t, [_ptr, _ptr, c_int64, _ptr, c_int64, c_int64, c_int64,
                                      c_int64]),
    "sae_feature_weights": (status_t, [_ptr, c_int64, _handle, _ptr, c_int64, c_int64]),
    "sae_feature_exchange": (status_t, [_ptr, c_int64, _ptr, _handle, _ptr, c_int64, _ptr,
                                        c_int64, c_int64, c_int32, c_int32, _ptr, _ptr,
                                        c_int64]),
    # ortho.h
    "sae_ortho_subset": (status_t, [_ptr, POINTER(c_int64), c_int64, c_int64, c_uint64,
                                    c_uint64]),
    "sae_ortho_penalty": (status_t, [POINTER(c_double), _ptr, c_int64, c_float, _ptr, c_int64,
                                     c_int64, c_int64, _ptr, c_int64, c_int32]),
    "sae_ortho_coherence": (status_t, [POINTER(_structs.Coherence), _ptr, _ptr, c_int64,
                                       c_int64, c_int64, _ptr, c_int64, c_int32]),
    "sae_ortho_spectrum": (status_t, [_ptr, POINTER(c_double), POINTER(c_double), _ptr,
                                      c_int64, c_int64, c_int64, _ptr, c_int64, c_int32]),
    "sae_ortho_lowdin": (status_t, [_ptr, _ptr, c_int64, c_int64, c_int64, _ptr, c_int64,
                                    c_uint32, c_int32]),
    "sae_ortho_dict_lowdin": (status_t, [POINTER(_handle), _ptr, _handle, _ptr, c_int64,
                                         c_uint32, c_int32]),
    "sae_ortho_relative_l2": (status_t, [POINTER(c_double), _ptr, c_int64, _ptr, c_int64, _ptr,
                                         c_int64, c_int64, c_int64]),
    # synth.h
    "sae_synth_create": (status_t, [POINTER(_handle), POINTER(_structs.SynthOptions)]),
    "sae_synth_free": (None, [_handle]),
    "sae_synth_sample": (status_t, [_handle, c_int64, _ptr, c_int64, _ptr, c_int64]),
    "sae_synth_directions": (_ptr, [_handle]),
    "sae_synth_probabilities": (_ptr, [_handle]),
    "sae_synth_d": (c_int64, [_handle]),
    "sae_synth_n_features": (c_int64, [_handle]),
    "sae_mmcs": (status_t, [_ptr, c_int64, c_int64, _ptr, c_int64, c_int64, c_int64,
                            POINTER(c_double), POINTER(c_double)]),
    "sae_mcc": (status_t, [_ptr, c_int64, c_int64, _ptr, c_int64, c_int64, c_int64,
                           POINTER(c_double), _ptr]),
    "sae_shrinkage": (status_t, [_ptr, c_int64, _ptr, c_int64, c_int64, c_int64,
                                 POINTER(c_double)]),
    # host.h
    "sae_host_check": (status_t, [POINTER(_host_structs.HostTable)]),
    "sae_host_find_hook": (status_t, [POINTER(c_int32), POINTER(_host_structs.HostTable),
                                      c_char_p]),
    "sae_host_forward": (status_t, [POINTER(_host_structs.HostTable), _ptr, c_int64, c_int64,
                                    _ptr, _host_structs.HookFn, c_void_p]),
    "sae_host_backward": (status_t, [POINTER(_host_structs.HostTable), c_int64, c_int64, _ptr,
                                     _ptr, _ptr]),
    "sae_host_backward_from": (status_t, [POINTER(_host_structs.HostTable), c_int64, c_int64,
                                          c_int32, _ptr, _ptr, _ptr]),
    "sae_logits_ce": (status_t, [POINTER(c_float), _ptr, _ptr, _ptr, c_int64, c_int64]),
    "sae_logits_diff": (status_t, [POINTER(c_float), _ptr, _ptr, c_int64, c_int64, c_int64,
                                   c_int32, c_int32]),
    # patch.h
    "sae_patch_create_record": (status_t, [POINTER(_handle), _handle, c_uint32, c_int64, c_int64,
                                           POINTER(_host_structs.PatchOptions)]),
    "sae_patch_create_splice": (status_t, [POINTER(_handle), _handle, c_int32,
                                           POINTER(_host_structs.PatchOptions)]),
    "sae_patch_create_ablate_zero": (status_t, [POINTER(_handle), _handle, _ptr, c_int64,
                                                POINTER(_host_structs.PatchOptions)]),
    "sae_patch_create_ablate_mean": (status_t, [POINTER(_handle), _handle, _ptr, c_int64, _ptr,
                                                c_int64, POINTER(_host_structs.PatchOptions)]),
    "sae_patch_create_ablate_resample": (status_t, [POINTER(_handle), _handle, _ptr, c_int64,
                                                    _ptr, c_int64, c_int64, c_int64, c_uint64,
                                                    POINTER(_host_structs.PatchOptions)]),
    "sae_patch_create_clamp": (status_t, [POINTER(_handle), _handle, c_int32, c_float,
                                          POINTER(_host_structs.PatchOptions)]),
    "sae_patch_create_edit": (status_t, [POINTER(_handle), _handle, _ptr, c_int64, _ptr, c_int64,
                                         POINTER(_host_structs.PatchOptions)]),
    "sae_patch_create_steer": (status_t, [POINTER(_handle), _handle, c_int32, c_float, c_int32,
                                          POINTER(_host_structs.PatchOptions)]),
    "sae_patch_free": (None, [_handle]),
    "sae_patch_kind": (c_int32, [_handle]),
    "sae_patch_apply": (status_t, [_handle, _ptr, c_int64, c_int64]),
    "sae_patch_apply_list": (status_t, [_ptr, c_int32, _ptr, c_int64, c_int64]),
    "sae_patch_get_record": (status_t, [_handle, POINTER(_host_structs.PatchRecord)]),
    "sae_patch_clear_record": (status_t, [_handle]),
    "sae_steering_direction": (status_t, [_ptr, c_int64, _handle, c_int32, c_float, c_int32]),
    "sae_steering_export_gguf": (status_t, [c_char_p, c_char_p, c_int64, c_int32, _ptr, _ptr,
                                            c_int64]),
    # capture.h
    "sae_source_from_host": (status_t, [POINTER(_handle), POINTER(_host_structs.HostTable),
                                        c_int32, _ptr, c_int64, c_int64, c_int64, c_int32,
                                        POINTER(_structs.SourceOptions)]),
    "sae_host_capture": (status_t, [c_char_p, POINTER(_host_structs.HostTable), _ptr, c_int64,
                                    c_int64, c_int32, POINTER(c_char_p), c_int32, _ptr,
                                    POINTER(_host_structs.CaptureOptions)]),
    "sae_prompts_run": (status_t, [_ptr, _ptr, c_int64, POINTER(_host_structs.HostTable),
                                   POINTER(_host_structs.Prompts), _ptr, c_int64]),
    "sae_prompts_approximation": (status_t, [POINTER(_host_structs.Approximation),
                                             POINTER(_host_structs.HostTable),
                                             POINTER(_host_structs.Prompts), _ptr, c_int64, _ptr,
                                             c_int64, _ptr]),
    "sae_dict_loss_recovered": (status_t, [POINTER(_host_structs.LossRecovered),
                                           POINTER(_host_structs.HostTable), c_int32, _handle,
                                           _ptr, c_int64, c_int64,
                                           POINTER(_host_structs.LossRecoveredOptions)]),
    # graph.h
    "sae_graph_attribute": (status_t, [POINTER(_handle), POINTER(_host_structs.HostTable), _ptr,
                                       _ptr, c_int32, POINTER(_host_structs.PromptPairs),
                                       POINTER(_host_structs.GraphOptions)]),
    "sae_graph_create": (status_t, [POINTER(_handle), c_int32, POINTER(c_char_p), _ptr, _ptr]),
    "sae_graph_free": (None, [_handle]),
    "sae_graph_add_nodes": (status_t, [_handle, c_int64, _ptr, _ptr, _ptr, _ptr]),
    "sae_graph_add_edges": (status_t, [_handle, c_int64, _ptr, _ptr, _ptr]),
    "sae_graph_get_info": (status_t, [_handle, POINTER(_host_structs.GraphInfo)]),
    "sae_graph_hook_name": (c_char_p, [_handle, c_int32]),
    "sae_graph_hook_d_sae": (c_int64, [_handle, c_int32]),
    "sae_graph_get_arrays": (status_t, [_handle, POINTER(_host_structs.GraphArrays)]),
    "sae_graph_find_node": (status_t, [POINTER(c_int64), _handle, c_int32, c_int32, c_int32]),
    "sae_graph_top_nodes": (status_t, [_ptr, POINTER(c_int64), _handle, c_int64, c_int32]),
    "sae_graph_top_edges": (status_t, [_ptr, POINTER(c_int64), _handle, c_int64]),
    "sae_graph_prune": (status_t, [_handle, c_float, c_float]),
    "sae_graph_set_label": (status_t, [_handle, c_int32, c_int32, c_char_p]),
    "sae_graph_label": (c_char_p, [_handle, c_int32, c_int32]),
    "sae_graph_set_metadata": (status_t, [_handle, c_char_p, c_char_p]),
    "sae_graph_metadata": (c_char_p, [_handle, c_char_p]),
    "sae_graph_save_json": (status_t, [_handle, c_char_p]),
    "sae_graph_load_json": (status_t, [POINTER(_handle), c_char_p, _ptr]),
    "sae_graph_save_dot": (status_t, [_handle, c_char_p,
                                      POINTER(_host_structs.GraphDotOptions)]),
    "sae_graph_evaluate": (status_t, [POINTER(_host_structs.GraphEval), _handle, _ptr,
                                      POINTER(_host_structs.HostTable), _ptr,
                                      POINTER(_host_structs.PromptPairs),
                                      POINTER(_host_structs.GraphEvalOptions)]),
    "sae_graph_faithfulness_curve": (status_t, [_ptr, _ptr, _handle, _ptr, c_int64,
                                                POINTER(_host_structs.HostTable), _ptr,
                                                POINTER(_host_structs.PromptPairs),
                                                POINTER(_host_structs.GraphEvalOptions)]),
    "sae_graph_ablate": (status_t, [_ptr, _ptr, _handle, _ptr,
                                    POINTER(_host_structs.HostTable), _ptr,
                                    POINTER(_host_structs.PromptPairs),
                                    POINTER(_host_structs.GraphEvalOptions)]),
    "sae_graph_method_name": (c_char_p, [c_int32]),
}

def _candidates():
    """Yield (description, path) pairs to try, in the documented order."""
    env = os.environ.get("SAE_LIBRARY")
    if env:
        yield "SAE_LIBRARY", env
        return  # an explicit choice is never silently replaced by another library
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "libsae.so*"))):
        yield "package directory", path
    found = ctypes.util.find_library("sae")
    if found:
        yield "system", found
    yield "system", _SONAME


def _open():
    errors = []
    for where, path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as exc:
            errors.append("%s (%s): %s" % (path, where, exc))
    raise ImportError("cannot load libsae; set SAE_LIBRARY to the path of libsae.so. Tried:\n  "
                      + "\n  ".join(errors))


lib, path = _open()


def _decode(raw):
    return raw.decode("utf-8", "replace") if raw is not None else None


def status_str(code):
    """Static text of a status code (``sae_status_str``)."""
    return _decode(lib.sae_status_str(code))


def last_error():
    """This thread's last error message (``sae_last_error``), "" if none."""
    return _decode(lib.sae_last_error()) or ""


def _errcheck(result, func, args):
    if result < 0:
        raise SaeError(result, last_error())
    return result


def _missing(name):
    def stub(*args):
        raise NotImplementedError("%s does not export %s (a partial development build?)"
                                  % (path, name))
    stub.__name__ = name
    return stub


def _declare():
    """Apply the table. A function the library lacks (only a development build can: a release
    of the right version exports all of them) raises NotImplementedError when called."""
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            func = getattr(lib, name)
        except AttributeError:
            setattr(lib, name, _missing(name))
            continue
        func.restype = restype
        func.argtypes = argtypes
        if restype is status_t:
            func.errcheck = _errcheck


def _check_version():
    number = lib.sae_version_number()
    major, minor = number // 10000, number // 100 % 100
    want_major, want_minor = BINDINGS_VERSION
    # Before 1.0 every minor release has its own SONAME (libsae.so.0.MINOR): require it exactly.
    # From 1.0 on, a minor release only adds, so any newer minor of the same major works.
    compatible = major == want_major and (minor == want_minor if major == 0
                                          else minor >= want_minor)
    if not compatible:
        raise ImportError("%s is libsae %s; these bindings need %d.%d"
                          % (path, _decode(lib.sae_version_string()), want_major, want_minor))


_declare()
_check_version()


def new_handle():
    """An empty ``c_void_p`` to pass by reference as an ``out`` handle."""
    return c_void_p()


def fspath_bytes(p):
    """A path (str, bytes or os.PathLike) as bytes for a ``const char *`` argument."""
    return os.fsencode(os.fspath(p))
