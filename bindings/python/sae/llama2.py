"""``Llama2``: llama2.c checkpoints and tokenizers (the llama2.c host of examples/llama2) as a
:class:`sae.Host`, with run.c's text generation.

The host lives in its own shared library, ``libsae_llama2.so`` (built beside ``libsae.so``, not
installed), found in order: the path in the ``SAE_LLAMA2_LIBRARY`` environment variable; this
package's directory; the directory of the libsae in use.
"""

import ctypes
import os
from ctypes import POINTER, c_char_p, c_float, c_int, c_int32, c_int64, c_uint64, c_void_p

import numpy as np

from . import _lib
from . import _host_structs as _hs
from ._callbacks import CallbackGuard
from ._lib import SaeError, fspath_bytes
from .host import Host, _PatchDispatch, _token_batch
from ._handle import NativeHandle

_LIBRARY_NAME = "libsae_llama2.so"


class _Config(ctypes.Structure):
    """``llama2_config`` (llama2.h): the 7 int32 of a checkpoint header."""

    _fields_ = [(name, c_int32) for name in ("dim", "hidden_dim", "n_layers", "n_heads",
                                             "n_kv_heads", "vocab_size", "seq_len")]


class _Sampling(ctypes.Structure):
    """``llama2_sampling`` (llama2.h)."""

    _fields_ = [("temperature", c_float), ("top_p", c_float), ("seed", c_uint64)]


_P = POINTER(c_void_p)
_SIGNATURES = {
    "llama2_last_error": (c_char_p, []),
    "llama2_model_load": (c_int32, [_P, c_char_p, c_void_p]),
    "llama2_model_free": (None, [c_void_p]),
    "llama2_model_config": (POINTER(_Config), [c_void_p]),
    "llama2_model_host": (None, [c_void_p, POINTER(_hs.HostTable)]),
    "llama2_state_create": (c_int32, [_P, c_void_p]),
    "llama2_state_free": (None, [c_void_p]),
    "llama2_generate": (c_int32, [c_void_p, c_void_p, c_int64, c_int64, POINTER(_Sampling),
                                  _hs.HookFn, c_void_p, c_void_p, POINTER(c_int64)]),
    "llama2_tokenizer_load": (c_int32, [_P, c_char_p, c_int32, c_void_p]),
    "llama2_tokenizer_free": (None, [c_void_p]),
    "llama2_tokenizer_encode": (c_int32, [c_void_p, c_char_p, c_int, c_int, c_void_p, c_int64,
                                          POINTER(c_int64)]),
    "llama2_tokenizer_piece": (c_char_p, [c_void_p, c_int32, c_int32]),
}

_library = None


def _candidates():
    env = os.environ.get("SAE_LLAMA2_LIBRARY")
    if env:
        yield env
        return  # an explicit choice is never silently replaced
    yield os.path.join(os.path.dirname(os.path.abspath(__file__)), _LIBRARY_NAME)
    if os.path.dirname(_lib.path):
        yield os.path.join(os.path.dirname(os.path.abspath(_lib.path)), _LIBRARY_NAME)


def _errcheck(result, func, args):
    if result < 0:
        raise SaeError(result, (_library.llama2_last_error() or b"").decode("utf-8", "replace"))
    return result


def _llama2():
    """The llama2.c host library, loaded and declared on first use."""
    global _library
    if _library is None:
        errors = []
        for path in _candidates():
            try:
                library = ctypes.CDLL(path)
                break
            except OSError as exc:
                errors.append("%s: %s" % (path, exc))
        else:
            raise ImportError("cannot load the llama2.c host; set SAE_LLAMA2_LIBRARY to the path "
                              "of %s. Tried:\n  %s" % (_LIBRARY_NAME, "\n  ".join(errors)))
        for name, (restype, argtypes) in _SIGNATURES.items():
            func = getattr(library, name)
            func.restype, func.argtypes = restype, argtypes
            if restype is c_int32:
                func.errcheck = _errcheck
        _library = library
    return _library


class Llama2(Host, NativeHandle):
    """A llama2.c checkpoint (e.g. stories260K.bin) run by the llama2.c host, with hook points
    ``resid_pre.L``, ``attn_out.L``, ``mlp_out.L`` and ``resid_post.L`` for each layer L, a
    forward and a backward pass (:meth:`run`, :meth:`grad`), its tokenizer (optional) and
    run.c's generation (:meth:`generate`).

    Owns its C memory (:meth:`close`, or ``with``); one thread at a time.
    """

    def __init__(self, model, tokenizer=None):
        """Load the checkpoint at ``model`` and, if given, the tokenizer file (tok512.bin,
        tokenizer.bin) at ``tokenizer``. Raises SaeError for a missing or malformed file."""
        self._c = _llama2()
        self._model = self._tokenizer = self._state = None
        handle = c_void_p()
        self._c.llama2_model_load(handle, fspath_bytes(model), None)
        self._model = handle.value
        config = self._c.llama2_model_config(self._model).contents
        self.config = {name: getattr(config, name) for name, _ in _Config._fields_}
        if tokenizer is not None:
            self._c.llama2_tokenizer_load(handle, fspath_bytes(tokenizer),
                                          self.config["vocab_size"], None)
            self._tokenizer = handle.value
        table = _hs.HostTable()
        self._c.llama2_model_host(self._model, table)
        self._set_table(table)

    def _release(self):
        c = getattr(self, "_c", None)
        if c is None:
            return
        self._table = None
        state, self._state = self._state, None
        tokenizer, self._tokenizer = self._tokenizer, None
        model, self._model = self._model, None
        c.llama2_state_free(state)
        c.llama2_tokenizer_free(tokenizer)
        c.llama2_model_free(model)

    # ---- tokenizer ---------------------------------------------------------------------------

    def _tok(self):
        if self._tokenizer is None:
            raise ValueError("no tokenizer: give Llama2(model, tokenizer=PATH)"
                             if self._model else "the model is closed")
        return self._tokenizer

    def encode(self, text, *, bos=True, eos=False):
        """Token ids of ``text`` as run.c encodes them (BOS = 1 first, optional EOS = 2 last),
        as an int32 array."""
        raw = text.encode("utf-8")
        out = np.empty(len(raw) + 3, np.int32)
        n = c_int64()
        self._c.llama2_tokenizer_encode(self._tok(), raw, int(bool(bos)), int(bool(eos)),
                                        out.ctypes.data, out.size, n)
        return out[:n.value].copy()

    def decode(self, tokens):
        """The text of ``tokens`` as run.c prints it: each token after the first, as a piece
        following the one before it (the first, usually BOS, gives no text)."""
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        vocab = self.config["vocab_size"]
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError("token ids must lie in [0, %d)" % vocab)
        tok = self._tok()
        pieces = [self._c.llama2_tokenizer_piece(tok, int(prev), int(cur))
                  for prev, cur in zip(ids[:-1], ids[1:])]
        return b"".join(pieces).decode("utf-8", "replace")

    # ---- generation --------------------------------------------------------------------------

    def generate_tokens(self, prompt="", *, steps=256, temperature=0.0, top_p=0.9, seed=1,
                        patches=None):
        """Generate as run.c: the prompt (text, encoded with BOS first; or token ids), then one
        token per position until ``steps`` positions have run (prompt included) or BOS comes.
        Greedy at ``temperature`` 0, else softmax(logits / temperature) sampled among the most
        probable tokens whose mass exceeds ``top_p`` (0 or 1: all) with run.c's generator
        started at ``seed`` (>= 1): the same seed gives run.c's text. ``patches`` (as in
        :meth:`Host.run`) change the activations on every pass: the whole prompt at once, then
        each new token.

        Returns:
            int32 array: the prompt's tokens then the generated ones (without the final BOS).
        """
        if isinstance(prompt, str):
            prompt = self.encode(prompt)
        ids, _ = _token_batch(prompt)
        ids = ids.reshape(-1)
        if self._state is None:
            handle = c_void_p()
            self._c.llama2_state_create(handle, self._live_model())
            self._state = handle.value
        out = np.empty(max(int(steps), 0) + 1, np.int32)
        n = c_int64()
        sampling = _Sampling(float(temperature), float(top_p), int(seed))
        guard = CallbackGuard()
        dispatch = _PatchDispatch(self, patches, guard) if patches else None
        self._call_with(guard, self._c.llama2_generate, self._state, ids.ctypes.data, ids.size,
                        int(steps), sampling, dispatch.fn if dispatch else _hs.NO_HOOK, None,
                        out.ctypes.data, n)
        return out[:n.value].copy()

    def generate(self, prompt="", **options):
        """The text of :meth:`generate_tokens` (same arguments), as run.c prints it."""
        return self.decode(self.generate_tokens(prompt, **options))

    def _live_model(self):
        if self._model is None:
            raise ValueError("the model is closed")
        return self._model

