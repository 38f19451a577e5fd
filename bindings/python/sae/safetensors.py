"""Read and write safetensors files with libsae's strictly validating reader and writer.

Floating tensors (F16, BF16, F32, F64, and F8 where the library converts them) load as float32;
integer and boolean tensors load with their own numpy dtype. Every load returns copies, so the
arrays outlive the file.
"""

import ctypes
import json
import struct

import numpy as np

from . import _arrays
from ._lib import fspath_bytes, lib, new_handle

# sae_dtype values (safetensors.h) of the dtypes that map to a numpy dtype directly.
_NUMPY_OF_DTYPE = {
    0: np.dtype(np.bool_), 1: np.dtype("<u1"), 2: np.dtype("<i1"), 3: np.dtype("<i2"),
    4: np.dtype("<u2"), 5: np.dtype("<i4"), 6: np.dtype("<u4"), 7: np.dtype("<i8"),
    8: np.dtype("<u8"), 9: np.dtype("<f2"), 11: np.dtype("<f4"), 12: np.dtype("<f8"),
}
_DTYPE_OF_NUMPY = {dtype.newbyteorder("="): code for code, dtype in _NUMPY_OF_DTYPE.items()}
# sae_dtype values converted to float32 by sae_st_to_f32 rather than copied.
_FLOATING = {9, 10, 11, 12, 13, 14}  # F16, BF16, F32, F64, F8_E4M3, F8_E5M2
_MAX_DIMS = 8


class _Reader:
    """An open ``sae_st_reader`` as a context manager."""

    def __init__(self, path):
        handle = new_handle()
        lib.sae_st_open(handle, fspath_bytes(path))
        self.handle = handle.value

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        lib.sae_st_close(self.handle)
        self.handle = None


def _tensor(info):
    """A numpy copy of the tensor that ``info`` (a ``sae_tensor_info``) describes."""
    shape = tuple(info.shape[:info.ndim])
    if info.dtype in _FLOATING:
        out = np.empty(shape, dtype=np.float32)
        lib.sae_st_to_f32(ctypes.byref(info), _arrays.address(out), info.numel)
        return out
    dtype = _NUMPY_OF_DTYPE[info.dtype]
    flat = _arrays.copy_from(info.data, info.numel, dtype)
    return flat.astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def load_file(path):
    """Load every tensor of a safetensors file.

    Returns:
        dict name -> numpy array, in name order. Floating tensors are float32.

    Raises:
        SaeError: the file cannot be read (code -4) or is malformed (-5; the message says
            which rule failed and where).
    """
    tensors = {}
    with _Reader(path) as reader:
        for i in range(lib.sae_st_count(reader.handle)):
            info = lib.sae_st_tensor_at(reader.handle, i).contents
            tensors[info.name.decode("utf-8")] = _tensor(info)
    return tensors


def load_metadata(path):
    """The ``__metadata__`` string map of a safetensors file ({} when it has none).

    The file is validated by the library first; the keys are listed from its JSON header
    (the C API looks values up by key only).
    """
    with _Reader(path) as reader, open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length).decode("utf-8"))
        keys = header.get("__metadata__") or {}
        return {key: lib.sae_st_metadata(reader.handle, key.encode("utf-8")).decode("utf-8")
                for key in keys}


def _dtype_code(name, array):
    try:
        return _DTYPE_OF_NUMPY[array.dtype.newbyteorder("=")]
    except KeyError:
        raise TypeError("tensor %r has dtype %s, which safetensors cannot hold"
                        % (name, array.dtype)) from None


def save_file(tensors, path, metadata=None):
    """Write ``tensors`` (a mapping name -> array) to a safetensors file, crash-safely.

    Arrays are written little-endian and row-major with their own dtype (bool, [u]int8..64,
    float16/32/64); ``metadata`` is an optional mapping of strings stored in ``__metadata__``.
    The file appears at ``path`` only once it is complete.

    Raises:
        TypeError: a dtype safetensors cannot hold, or non-string metadata.
        ValueError: more than 8 dimensions.
        SaeError: the library rejects a tensor or cannot write the file.
    """
    handle = new_handle()
    lib.sae_st_writer_create(handle)
    writer = handle.value
    keep = []  # the writer borrows the bytes until it has written them
    try:
        for name, value in tensors.items():
            array = np.asarray(value)
            code = _dtype_code(name, array)
            if array.ndim > _MAX_DIMS:
                raise ValueError("tensor %r has %d dimensions; safetensors in libsae allows %d"
                                 % (name, array.ndim, _MAX_DIMS))
            # np.asarray keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d).
            array = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
            shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
            keep.append((array, shape))
            lib.sae_st_writer_add(writer, str(name).encode("utf-8"), code, array.ndim, shape,
                                  _arrays.address(array))
        for key, value in (metadata or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("metadata keys and values must be str, got %r: %r" % (key, value))
            lib.sae_st_writer_set_metadata(writer, key.encode("utf-8"), value.encode("utf-8"))
        lib.sae_st_writer_write(writer, fspath_bytes(path))
    finally:
        lib.sae_st_writer_free(writer)
