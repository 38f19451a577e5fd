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

Train one, here on synthetic data with known features::

    data = sae.Synthetic(d=64, n_features=128, seed=1)   # known ground-truth directions
    with sae.Trainer("topk", d_in=64, d_sae=256, k=8, preset="sparsify") as t:
        last = t.fit(data, steps=500, batch_size=1024)  # last.fvu, last.l0, ...
        t.save_checkpoint("run.ckpt")                    # sae.Trainer.load_checkpoint(...)
        d = t.dictionary()
    a_to_b, b_to_a = sae.mmcs(d.W_dec, data.directions)
    result = sae.evaluate(d, data, max_rows=10000)       # result.fvu, result.n_dead, ...

Training and evaluation read their rows in C from a :class:`Source` (an array, files on disk,
a generator, or a model run as it is read: :meth:`Source.from_host`); ``fit`` and ``evaluate``
also take those directly. :func:`capture` writes a model's activations to a file and
:func:`loss_recovered` scores a dictionary spliced into the model.

Sparse feature circuits (Marks et al.) are discovered in C on any :class:`Host` (a model
written in Python, or :class:`Llama2`): :meth:`Graph.attribute` with :class:`PromptPairs`.

The shared library is found through the ``SAE_LIBRARY`` environment variable, then this
package's directory, then the system search path. Errors from the library raise
:class:`SaeError`, whose ``code`` is the negative ``sae_status`` and whose message is the
library's detailed text.
"""

from ._lib import SaeError, lib as _c
from .codes import SparseCodes
from .dictionary import Dictionary, detect_format, load
from .safetensors import load_file, load_metadata, save_file
from .synth import Synthetic, mcc, mmcs, shrinkage
from .source import Source
from .trainer import FitProgress, Trainer, TrainMetrics
from .evaluate import EvalResult, evaluate
from .supervised import (Supervised, f1_top, feature_exchange, feature_f1, feature_weights,
                         prompts_approximation, prompts_run)
from .ortho import Ortho
from ._structs import TRAIN_SKIP_NONFINITE
from .host import Host, logits_ce, logits_diff
from .patch import Patch, export_control_vector, steering_direction
from .llama2 import Llama2
from .capture import LossRecovered, capture, loss_recovered
from .graph import Graph, GraphEval, PromptPairs

__all__ = ["load", "Dictionary", "SparseCodes", "SaeError", "version", "blas_kernels",
           "default_threads", "detect_format", "load_file", "load_metadata", "save_file",
           "Trainer", "TrainMetrics", "FitProgress", "TRAIN_SKIP_NONFINITE", "Synthetic",
           "mmcs", "mcc", "shrinkage", "Source", "evaluate", "EvalResult", "Supervised",
           "feature_f1", "f1_top", "feature_weights", "feature_exchange", "prompts_run",
           "prompts_approximation", "Host", "Patch",
           "Llama2", "logits_ce", "logits_diff", "steering_direction", "export_control_vector",
           "capture", "loss_recovered", "LossRecovered", "Ortho", "Graph", "GraphEval",
           "PromptPairs"]


def version():
    """Version of the loaded libsae, e.g. "0.1.0"."""
    return _c.sae_version_string().decode()


def blas_kernels():
    """Name of the BLIS kernel set libsae uses on this CPU ("skx", "zen3", "haswell", ...)."""
    return _c.sae_blas_kernels().decode()


def default_threads():
    """Threads a call uses when it asks for 0 ("default"): the CPUs this process may run on."""
    return _c.sae_default_threads()
