"""numpy <-> C buffer helpers: float32 row-major inputs, and read-only views of borrowed memory."""

import ctypes

import numpy as np

_F32 = np.dtype(np.float32)


def check_real(a, name):
    """Raise TypeError unless ``a`` holds real numbers (bool, integer or floating point)."""
    if not (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer)
            or np.issubdtype(a.dtype, np.floating)):
        raise TypeError("%s has dtype %s; expected real numbers" % (name, a.dtype))


def as_f32(a, shape, name):
    """``a`` as a C-contiguous float32 array of exactly ``shape``, else ValueError naming it.

    Used for weights, which the library copies: a copy is made only when ``a`` is not already
    float32 and C-contiguous.
    """
    a = np.asarray(a)
    check_real(a, name)
    if a.shape != tuple(shape):
        raise ValueError("%s has shape %s, expected %s" % (name, a.shape, tuple(shape)))
    return np.ascontiguousarray(a, dtype=np.float32)


def as_rows(x, width, name):
    """View ``x`` of shape (..., width) as float32 rows the C kernels can read.

    Returns ``(rows, ld, lead)``: ``rows`` is (n, width) float32 with unit column stride,
    ``ld >= width`` its leading dimension in elements (taken from the strides, so a row-strided
    float32 array such as ``big[:, :width]`` is passed without a copy) and ``lead`` the leading
    shape to restore on outputs. Other dtypes, column-strided, negative-strided or misaligned
    arrays are copied.
    """
    a = np.asarray(x)
    check_real(a, name)
    if a.ndim == 0 or a.shape[-1] != width:
        raise ValueError("%s has shape %s, expected (..., %d)" % (name, a.shape, width))
    lead = a.shape[:-1]
    rows = a.reshape(-1, width)  # a view whenever the strides allow it
    n = rows.shape[0]
    if (rows.dtype == _F32 and rows.flags.aligned and width > 0
            and (n <= 1 or rows.strides[0] >= width * 4 and rows.strides[0] % 4 == 0)
            and (width <= 1 or rows.strides[1] == 4)):
        ld = rows.strides[0] // 4 if n > 1 else width
        return rows, max(ld, width), lead
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    return rows, max(width, 1), lead


def address(a):
    """Address of the first element of ``a`` (for ``c_void_p`` arguments), None if ``a`` is None."""
    return None if a is None else a.ctypes.data


class _Borrowed:
    """Exposes ``size`` elements of borrowed C memory through ``__array_interface__``.

    The array made from it keeps this object as its base, and this object keeps ``owner``
    alive, so the memory stays valid for as long as any view of it exists.
    """

    __slots__ = ("__array_interface__", "owner", "__weakref__")

    def __init__(self, ptr, shape, dtype, owner):
        self.owner = owner
        self.__array_interface__ = {
            "shape": tuple(shape),
            "typestr": np.dtype(dtype).str,
            "data": (ptr, True),  # read-only
            "version": 3,
        }


def borrowed_view(ptr, shape, dtype, owner):
    """A read-only numpy array over C memory at ``ptr`` that keeps ``owner`` alive.

    Returns ``(array, holder)``; ``holder`` may be tracked with a weak reference to know
    whether views are still alive.
    """
    holder = _Borrowed(ptr, shape, dtype, owner)
    view = np.asarray(holder)
    return view, holder


def copy_from(ptr, count, dtype):
    """A new numpy array holding a copy of ``count`` elements of ``dtype`` at address ``ptr``."""
    dtype = np.dtype(dtype)
    if count == 0:
        return np.empty(0, dtype)
    buf = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype).copy()
