"""Python bindings of libsae, a C library for sparse autoencoders (ctypes + numpy).

Load an SAE from the files SAELens, sparsify, dictionary_learning, OpenAI or sae-icm write,
or build one from arrays, then encode activations::

    import numpy as np
    import sae

    with sae.load("path/to/saelens_dir") as d:          # or a .pt file, or sae.load(p, k=8)
        x = np.random.randn(16, d.d_in).astype(np.float32)
        f = d.encode(x)                                  # (16, d_sae) dense codes
        codes = d.encode_sparse(x)                       # CSR: indices, values, offsets
        x_hat = d.decode(codes)                          # same as d.decode(f)
        x_hat, err = d.reconstruct(x)
        d.save("out_dir", format="saelens")

    tensors = sae.load_file("weights.safetensors")      # dict of numpy arrays
    sae.save_file({"x": x}, "x.safetensors", metadata={"note": "example"})

The shared library is found through the ``SAE_LIBRARY`` environment variable, then this
package's directory, then the system search path. Errors from the library raise
:class:`SaeError`, whose ``code`` is the negative ``sae_status`` and whose message is the
library's detailed text.
"""

from ._lib import SaeError, lib as _c
from .codes import SparseCodes
from .dictionary import Dictionary, detect_format, load
from .safetensors import load_file, load_metadata, save_file

__all__ = ["load", "Dictionary", "SparseCodes", "SaeError", "version", "blas_kernels",
           "default_threads", "detect_format", "load_file", "load_metadata", "save_file"]


def version():
    """Version of the loaded libsae, e.g. "0.1.0"."""
    return _c.sae_version_string().decode()


def blas_kernels():
    """Name of the BLIS kernel set libsae uses on this CPU ("skx", "zen3", "haswell", ...)."""
    return _c.sae_blas_kernels().decode()


def default_threads():
    """Threads a call uses when it asks for 0 ("default"): the CPUs this process may run on."""
    return _c.sae_default_threads()
