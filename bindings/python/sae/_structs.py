"""ctypes mirrors of the public libsae structs.

Each class repeats its C struct field by field, in the same order and with the same types
(include/sae/*.h). The versioned structs start with ``struct_size``; :func:`new` fills it with
``ctypes.sizeof`` so that the library reads exactly the fields these bindings know about.
The layouts have no implicit padding (STYLE.md), so the sizes below are fixed by the ABI.
"""

import ctypes
from ctypes import c_char_p, c_float, c_int32, c_int64, c_uint32, c_uint64, c_void_p

#: Most dimensions a safetensors tensor may have (SAE_MAX_DIMS).
MAX_DIMS = 8


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


# The C layouts (64-bit targets): a mismatch here means the mirror drifted from the headers.
_EXPECTED_SIZES = {DictConfig: 64, DictWeights: 72, EncoderOptions: 32, LoadOptions: 24,
                   TensorInfo: 104}
if ctypes.sizeof(c_void_p) == 8:
    for _cls, _size in _EXPECTED_SIZES.items():
        assert ctypes.sizeof(_cls) == _size, (_cls.__name__, ctypes.sizeof(_cls), _size)


def new(cls, **fields):
    """A zeroed ``cls`` (the ``*_INIT`` value) with ``struct_size`` set and ``fields`` applied."""
    value = cls()
    value.struct_size = ctypes.sizeof(cls)
    for name, field_value in fields.items():
        setattr(value, name, field_value)
    return value
