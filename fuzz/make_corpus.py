#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets: fuzz/corpus/<target>/<name>.

Each target gets small valid files of every layout its reader knows and known-bad ones (the
rules FORMATS.md says a reader must enforce). Inputs follow the target's convention
(fuzz/fuzz_util.h and the comment on top of each fuzz_*.c). Needs numpy and torch (CPU) to
write .pt files; run it again after changing a reader's format, and commit the result.

    /usr/bin/python3 fuzz/make_corpus.py              # every target
    /usr/bin/python3 fuzz/make_corpus.py fuzz_task    # only the targets named
"""
import io
import json
import os
import shutil
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = np.random.default_rng(0)
D, F = 3, 4  # tiny dictionaries: every seed stays a few KB


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- safetensors --------------------------------------------------------------------------
DT = {np.float32: "F32", np.float16: "F16", np.float64: "F64", np.int64: "I64", np.int32: "I32",
      np.uint8: "U8", np.bool_: "BOOL"}


def safetensors(tensors, metadata=None, raw_header=None, pad=True):
    """tensors: name -> numpy array (bf16 as ("BF16", uint16 array))."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        if isinstance(a, tuple):
            dtype, a = a
        else:
            dtype = DT[a.dtype.type]
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = (raw_header if raw_header is not None else json.dumps(header)).encode()
    if pad:
        h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def weights(arch):
    w = {"W_enc": f32(D, F), "W_dec": f32(F, D), "b_dec": f32(D)}
    if arch == "gated":
        w.update(b_gate=f32(F), b_mag=f32(F), r_mag=f32(F))
    else:
        w["b_enc"] = f32(F)
    if arch in ("jumprelu", "batchtopk"):
        w["threshold"] = np.abs(f32(F))
    return w


def seeds_safetensors():
    t = "fuzz_safetensors"
    put(t, "f32_meta", safetensors({"a": f32(2, 3), "b": f32(3)}, {"format": "pt", "k": "v"}))
    put(t, "dtypes", safetensors({"h": f32(2, 2).astype(np.float16), "d": f32(3).astype(np.float64),
                                  "bf": ("BF16", np.array([0x3f80, 0xc000, 0x7fc0], np.uint16)),
                                  "i": np.array(7, np.int64), "u": np.arange(3, dtype=np.uint8),
                                  "z": np.zeros((0, 4), np.float32),
                                  "m": np.array([True, False])}))
    put(t, "nonfinite", safetensors({"x": np.array([np.nan, np.inf, -np.inf, 1e-45], np.float32)}))
    put(t, "empty", safetensors({}))
    put(t, "unicode_name", safetensors({"W_\u00e9nc\u2211": f32(2)}))
    put(t, "escaped_name", safetensors({}, raw_header='{"a\\"b\\u00e9":{"dtype":"F32","shape":[1],'
                                                      '"data_offsets":[0,4]}}') + b"\0\0\x80?")
    good = safetensors({"a": f32(2, 3), "b": f32(3)})
    put(t, "bad_truncated", good[:-5])
    put(t, "bad_header_length", struct.pack("<Q", 1 << 40) + good[8:])
    bad = [
        ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
         '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', 12, "bad_overlap"),
        ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8, "bad_gap"),
        ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
         '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8, "bad_duplicate"),
        ('{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}', 4,
         "bad_shape_overflow"),
        ('{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}', 4, "bad_dtype"),
        ('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', 4, "bad_float_dim"),
        ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]', 4, "bad_json"),
        ('{"a\\u0000b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4, "bad_nul_name"),
        ('{"__metadata__":{"k":1}}', 0, "bad_metadata"),
        ('[1,2]', 0, "bad_not_object"),
    ]
    for header, nbytes, name in bad:
        put(t, name, safetensors({}, raw_header=header) + b"\0" * nbytes)
    h = b'{"\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}    '
    put(t, "bad_utf8", struct.pack("<Q", len(h)) + h + b"\0" * 4)


# ---- SAELens and sparsify -----------------------------------------------------------------
def saelens_cfg(arch, **extra):
    c = {"architecture": arch, "d_in": D, "d_sae": F, "dtype": "float32", "device": "cpu",
         "apply_b_dec_to_input": True, "normalize_activations": "none",
         "metadata": {"model_name": "tiny", "hook_name": "blocks.0.hook_resid_post"}}
    if arch in ("topk", "batchtopk"):
        c["k"] = 2
    c.update(extra)
    return json.dumps(c)


def seeds_saelens():
    t = "fuzz_saelens"
    for arch in ("standard", "topk", "batchtopk", "jumprelu", "gated"):
        put(t, arch, saelens_cfg(arch).encode() + b"\0" + safetensors(weights(arch)))
    w = weights("jumprelu")
    w["log_threshold"] = np.log(w.pop("threshold"))
    put(t, "jumprelu_log_threshold", saelens_cfg("jumprelu").encode() + b"\0" + safetensors(w))
    w = weights("standard")
    w["scaling_factor"] = np.abs(f32(F))
    put(t, "scaling_factor", saelens_cfg("standard").encode() + b"\0" + safetensors(w))
    put(t, "topk_rescale_layer_norm", saelens_cfg("topk", rescale_acts_by_decoder_norm=True,
                                                  normalize_activations="layer_norm").encode()
        + b"\0" + safetensors(weights("topk")))
    put(t, "constant_norm_rescale", saelens_cfg("standard", apply_b_dec_to_input=False,
                                                normalize_activations="constant_norm_rescale")
        .encode() + b"\0" + safetensors(weights("standard")))
    put(t, "expected_average_scaler",
        saelens_cfg("standard", normalize_activations="expected_average_only_in").encode()
        + b"\0" + b'{"scaling_factor": 2.5}' + b"\0" + safetensors(weights("standard")))
    flat = {"d_in": D, "d_sae": F, "hook_point": "blocks.0.hook_resid_pre", "model_name": "tiny",
            "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 2},
            "normalize_activations": False, "apply_b_dec_to_input": False}
    put(t, "pre6_flat_topk", json.dumps(flat).encode() + b"\0" + safetensors(weights("topk")))
    put(t, "f16_weights", saelens_cfg("standard").encode() + b"\0" + safetensors(
        {k: v.astype(np.float16) for k, v in weights("standard").items()}))
    w = weights("standard")
    w["W_enc"][0, 0] = np.nan
    put(t, "nan_weight", saelens_cfg("standard").encode() + b"\0" + safetensors(w))
    put(t, "bad_inf_config", saelens_cfg("standard").replace('"d_in": 3', '"d_in": 1e999')
        .encode() + b"\0" + safetensors(weights("standard")))
    put(t, "bad_shape", saelens_cfg("standard", d_in=4).encode() + b"\0"
        + safetensors(weights("standard")))
    w = weights("gated")
    del w["r_mag"]
    put(t, "bad_missing_tensor", saelens_cfg("gated").encode() + b"\0" + safetensors(w))
    put(t, "bad_architecture", saelens_cfg("transcoder").encode() + b"\0"
        + safetensors(weights("standard")))
    put(t, "bad_k", saelens_cfg("topk", k=99).encode() + b"\0" + safetensors(weights("topk")))
    put(t, "bad_weights_truncated", saelens_cfg("standard").encode() + b"\0"
        + safetensors(weights("standard"))[:-3])


def sparsify_weights(encoder_f16=False):
    e = f32(F, D)
    return {"encoder.weight": e.astype(np.float16) if encoder_f16 else e, "encoder.bias": f32(F),
            "W_dec": f32(F, D), "b_dec": f32(D)}


def seeds_sparsify():
    t = "fuzz_sparsify"
    cfg = {"activation": "topk", "expansion_factor": 1, "normalize_decoder": True,
           "num_latents": F, "k": 2, "multi_topk": False, "skip_connection": False,
           "transcode": False, "d_in": D}
    put(t, "topk", json.dumps(cfg).encode() + b"\0" + safetensors(sparsify_weights()))
    c = dict(cfg, num_latents=0, expansion_factor=2)
    w = {"encoder.weight": f32(2 * D, D), "encoder.bias": f32(2 * D), "W_dec": f32(2 * D, D),
         "b_dec": f32(D)}
    put(t, "expansion_factor", json.dumps(c).encode() + b"\0" + safetensors(w))
    put(t, "f16_encoder", json.dumps(cfg).encode() + b"\0" + safetensors(sparsify_weights(True)))
    put(t, "bad_transcode", json.dumps(dict(cfg, transcode=True)).encode() + b"\0"
        + safetensors(sparsify_weights()))
    put(t, "bad_activation", json.dumps(dict(cfg, activation="groupmax")).encode() + b"\0"
        + safetensors(sparsify_weights()))
    put(t, "bad_k_zero", json.dumps(dict(cfg, k=0)).encode() + b"\0"
        + safetensors(sparsify_weights()))
    put(t, "bad_no_latents", json.dumps(dict(cfg, num_latents=0, expansion_factor=0)).encode()
        + b"\0" + safetensors(sparsify_weights()))


# ---- .pt files ----------------------------------------------------------------------------
def pt(state, legacy=False):
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def T(*shape):
    return torch.from_numpy(f32(*shape))


def dl_state(cls):
    if cls in ("AutoEncoder", "AutoEncoderNew", "AutoEncoderTopK", "BatchTopKSAE",
               "GatedAutoEncoder"):
        # nn.Linear weights; dictionary_learning's decoder is often a transposed view.
        s = OrderedDict([("encoder.weight", T(F, D)), ("decoder.weight", T(F, D).t())])
        if cls == "AutoEncoder":
            s.update(bias=T(D), **{"encoder.bias": T(F)})
        elif cls == "AutoEncoderNew":
            s.update(**{"encoder.bias": T(F), "decoder.bias": T(D)})
        elif cls == "GatedAutoEncoder":
            s.update(decoder_bias=T(D), r_mag=T(F), gate_bias=T(F), mag_bias=T(F))
        else:
            s.update(b_dec=T(D), k=torch.tensor(2), threshold=torch.tensor(0.25),
                     **{"encoder.bias": T(F)})
        return s
    s = OrderedDict(W_enc=T(D, F), b_enc=T(F), W_dec=T(F, D), b_dec=T(D))
    if cls == "JumpReluAutoEncoder":
        s["threshold"] = torch.from_numpy(np.abs(f32(F)))
    else:
        s.update(k=torch.tensor(2, dtype=torch.int32), threshold=torch.tensor(0.5),
                 group_sizes=torch.tensor([1, 3]))
    return s


def dl_config(cls, **extra):
    tr = {"dict_class": cls, "activation_dim": D, "dict_size": F, "lm_name": "tiny",
          "submodule_name": "resid_post_layer_0", "norm_factor": 1.5}
    if cls in ("AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        tr["k"] = 2
    tr.update(extra)
    return json.dumps({"trainer": tr, "buffer": {"d_submodule": D}}).encode()


class Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def seeds_dictionary_learning():
    t = "fuzz_dictionary_learning"
    for cls in ("AutoEncoder", "AutoEncoderNew", "GatedAutoEncoder", "JumpReluAutoEncoder",
                "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        put(t, cls, dl_config(cls) + b"\0" + pt(dl_state(cls)))
    s = dl_state("AutoEncoder")
    s = OrderedDict((k, v.to(torch.float16)) for k, v in s.items())
    put(t, "f16", dl_config("AutoEncoder") + b"\0" + pt(s))
    put(t, "bad_legacy", dl_config("AutoEncoder") + b"\0" + pt(dl_state("AutoEncoder"), True))
    put(t, "bad_evil_global", dl_config("AutoEncoder") + b"\0" + pt({"x": Evil()}))
    put(t, "bad_truncated", dl_config("AutoEncoder") + b"\0" + pt(dl_state("AutoEncoder"))[:-40])
    put(t, "bad_class", dl_config("AutoEncoder") + b"\0" + pt(dl_state("GatedAutoEncoder")))
    put(t, "bad_dims", dl_config("AutoEncoder", activation_dim=D + 1) + b"\0"
        + pt(dl_state("AutoEncoder")))
    put(t, "bad_inf_norm_factor", dl_config("AutoEncoder").replace(b"1.5", b"1e999") + b"\0"
        + pt(dl_state("AutoEncoder")))
    s = dl_state("AutoEncoderTopK")
    s["threshold"] = torch.tensor(float("nan"))
    put(t, "bad_nan_threshold", dl_config("AutoEncoderTopK") + b"\0" + pt(s))


def seeds_torch_pt():
    t = "fuzz_torch_pt"
    relu = OrderedDict([("pre_bias", T(D)), ("encoder.weight", T(F, D)), ("latent_bias", T(F)),
                        ("decoder.weight", T(D, F)), ("stats_last_nonzero", torch.zeros(F))])
    put(t, "openai_relu", b"\0" + pt(relu))
    topk = OrderedDict(relu, activation="TopK",
                       activation_state_dict={"k": 2, "postact_fn": "ReLU"})
    put(t, "openai_topk", b"\0" + pt(topk))
    flat = OrderedDict(relu, activation="TopK", **{"activation.k": 2,
                                                   "activation.postact_fn": "ReLU"})
    put(t, "openai_topk_flat", b"\0" + pt(flat))
    icm = OrderedDict([("W_enc.weight", T(F, D)), ("W_enc.bias", T(F)),
                       ("W_dec.weight", T(D, F)), ("W_dec.bias", T(D))])
    put(t, "icm_k2", b"\2" + pt(icm))
    put(t, "bad_icm_no_k", b"\0" + pt(icm))
    put(t, "bad_openai_activation", b"\0" + pt(OrderedDict(relu, activation="GELU")))
    put(t, "bad_not_dict", b"\0" + pt([T(2)]))
    put(t, "bad_evil_global", b"\0" + pt({"x": Evil()}))
    raw = pt(relu)
    put(t, "bad_truncated", b"\0" + raw[: len(raw) // 2])
    # A storage entry whose bytes disagree with its numel.
    src = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            data = src.read(info)
            if "/data/" in info.filename and info.filename.endswith("/0"):
                data = data[:-4]
            z.writestr(info.filename, data)
    put(t, "bad_storage_size", b"\0" + out.getvalue())
    put(t, "bad_overlapping_entries", b"\0" + overlapping_entries())


def overlapping_entries(n_entries=16, numel=1 << 16):
    """A .pt whose storages 1.. are central directory records pointing at the bytes of storage
    0 (deflated zeros): a zip bomb that inflates every entry from the same few hundred bytes.
    The reader must refuse it (lib/io/torch_pt.c, op_binpersid)."""
    state = OrderedDict(("t%d" % i, torch.zeros(numel)) for i in range(n_entries))
    src = zipfile.ZipFile(io.BytesIO(pt(state)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            if "/data/" in info.filename and not info.filename.endswith("/data/0"):
                continue
            method = zipfile.ZIP_DEFLATED if "/data/" in info.filename else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(info.filename), src.read(info), compress_type=method)
    b = out.getvalue()
    eocd = b.rfind(b"PK\x05\x06")
    cd_size, cd_off = struct.unpack("<II", b[eocd + 12:eocd + 20])
    records, p = [], cd_off
    while p < cd_off + cd_size:
        nlen, elen, clen = struct.unpack("<HHH", b[p + 28:p + 34])
        records.append(b[p:p + 46 + nlen + elen + clen])
        p += len(records[-1])
    first = next(r for r in records if r[46:46 + struct.unpack("<H", r[28:30])[0]].endswith(b"/data/0"))
    name = first[46:46 + struct.unpack("<H", first[28:30])[0]]
    for k in range(1, n_entries):  # same local header offset, sizes and CRC; another name
        other = name[:-1] + str(k).encode()
        records.append(first[:28] + struct.pack("<H", len(other)) + first[30:46] + other
                       + first[46 + len(name):])
    cd = b"".join(records)
    end = bytearray(b[eocd:eocd + 22])
    struct.pack_into("<HHII", end, 8, len(records), len(records), len(cd), cd_off)
    return b[:cd_off] + cd + bytes(end)


# ---- llama2.c -----------------------------------------------------------------------------
def llama2_model(dim=4, hidden=6, layers=1, heads=2, kv_heads=1, vocab=8, seq_len=4, shared=True):
    head = dim // heads
    kv = dim * kv_heads // heads
    n = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv * dim
         + layers * dim * dim + layers * dim + 3 * layers * hidden * dim + dim + seq_len * head)
    if not shared:
        n += vocab * dim
    hdr = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if shared else -vocab,
                      seq_len)
    return hdr + (rng.standard_normal(n).astype(np.float32) * 0.5).tobytes()


def seeds_llama2_model():
    t = "fuzz_llama2_model"
    put(t, "shared_classifier", llama2_model())
    put(t, "separate_classifier", llama2_model(shared=False))
    put(t, "two_layers_mha", llama2_model(dim=4, hidden=4, layers=2, heads=2, kv_heads=2))
    put(t, "bad_truncated", llama2_model()[:-4])
    put(t, "bad_odd_head", llama2_model(dim=3, heads=1, kv_heads=1))
    put(t, "bad_header_only", struct.pack("<7i", 64, 172, 5, 8, 4, 512, 512))


def tokenizer(extra):
    pieces = [("<unk>", 0.0), ("\n<s>\n", 0.0), ("\n</s>\n", 0.0)]
    pieces += [("<0x%02X>" % b, 0.0) for b in range(256)]
    pieces += extra
    out = [struct.pack("<i", max(len(p.encode()) for p, _ in pieces))]
    for p, s in pieces:
        b = p.encode()
        out.append(struct.pack("<fi", s, len(b)) + b)
    return len(pieces) - 259, b"".join(out)


def seeds_llama2_tokenizer():
    t = "fuzz_llama2_tokenizer"
    extra = [(" ", -1.0), ("a", -2.0), ("b", -3.0), ("ab", -0.5), (" ab", -0.25),
             ("\u00e9", -4.0), ("ba", -1.5)]
    v, tok = tokenizer(extra)
    put(t, "merges", struct.pack("<H", v) + b"ab bab \xc3\xa9\xe2\x88\x91\0" + tok)
    put(t, "empty_text", struct.pack("<H", v) + b"\0" + tok)
    v0, tok0 = tokenizer([])
    put(t, "bytes_only", struct.pack("<H", v0) + b"hi\n\0" + tok0)
    put(t, "bad_wrong_vocab", struct.pack("<H", v + 1) + b"a\0" + tok)
    put(t, "bad_truncated", struct.pack("<H", v) + b"a\0" + tok[:-3])
    put(t, "bad_long_piece", struct.pack("<H", v) + b"a\0" + struct.pack("<i", 1) + tok[4:])


# ---- circuit files (sae_graph_save_json) --------------------------------------------------
def circuit(**change):
    """A small circuit file as sae_graph_save_json writes it, with top-level keys changed."""
    g = OrderedDict([
        ("format", "libsae-circuit"), ("version", 1), ("method", "ig"), ("aggregation", "sum"),
        ("ig_steps", 10), ("n_pairs", 2), ("n_positions", 0), ("node_threshold", 0.1),
        ("edge_threshold", 0.01), ("metric_clean", 4.5), ("metric_patch", -4.25),
        ("metadata", {"model": "stories260K.bin"}),
        ("hooks", [{"name": "resid_post.1", "d_sae": 4}, {"name": "resid_post.3", "d_sae": 4}]),
        ("nodes", [{"hook": 0, "position": None, "feature": 0, "effect": 0.5, "label": "girl"},
                   {"hook": 0, "position": None, "feature": "error", "effect": -0.25},
                   {"hook": 1, "position": None, "feature": 2, "effect": 1.5},
                   {"hook": 1, "position": None, "feature": "error", "effect": 0.1}]),
        ("labels", [{"hook": 0, "feature": 0, "label": "girl"}]),
        ("edges", [{"source": 0, "target": 2, "weight": 0.3},
                   {"source": 1, "target": 3, "weight": -0.2}])])
    for key, value in change.items():
        if value is None:
            del g[key]
        else:
            g[key] = value
    return json.dumps(g, indent=1)


def seeds_graph_json():
    t = "fuzz_graph_json"
    put(t, "summed", circuit())
    put(t, "per_position", circuit(aggregation="per_position", n_positions=3, nodes=[
        {"hook": 0, "position": 0, "feature": 1, "effect": 0.5},
        {"hook": 1, "position": 2, "feature": "error", "effect": -1.0}],
        edges=[{"source": 0, "target": 1, "weight": 2.0}], labels=[]))
    put(t, "empty", circuit(nodes=[], edges=[], labels=[], metadata={}))
    put(t, "bad_edge_target", circuit(edges=[{"source": 0, "target": 9, "weight": 1.0}]))
    put(t, "bad_feature", circuit(nodes=[{"hook": 0, "position": None, "feature": 4,
                                          "effect": 1.0}], edges=[]))
    put(t, "bad_hook", circuit(nodes=[{"hook": 2, "position": None, "feature": 0,
                                       "effect": 1.0}], edges=[]))
    put(t, "bad_duplicate_node", circuit(nodes=[
        {"hook": 0, "position": None, "feature": 0, "effect": 1.0},
        {"hook": 0, "position": None, "feature": 0, "effect": 2.0}], edges=[]))
    put(t, "bad_format", circuit(format="something-else"))
    put(t, "bad_no_hooks", circuit(hooks=None))
    put(t, "bad_truncated", circuit()[:200])


# ---- the `sae` tool's readers: task files, prompt pairs, pair templates ---------------------
# The targets tokenize with the small tokenizer of fuzz/fuzz_cli.c: printable ASCII, " " + a
# letter, and the words listed there (" She", " is", " girl", " Lily", ...) are single tokens.


def jdump(o):
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


def task(**change):
    t = {"name": "pronoun", "hook": "layer.1", "bos": True,
         "attributes": [{"name": "name", "values": ["Lily", "Tim", "Mia"], "dictionary": True},
                        {"name": "gender", "values": ["female", "male"], "dictionary": False}],
         "prompts": [{"text": "Then %s said" % n,
                      "answer": a, "wrong": w, "labels": {"name": n, "gender": g}}
                     for n, g, a, w in (("Lily", "female", "she", "he"),
                                        ("Tim", "male", "he", "she"),
                                        ("Mia", "female", "she", "he"))],
         "pairs": [{"base": 0, "counterfactual": 1, "attribute": "name"},
                   {"base": 1, "counterfactual": 2, "attribute": "gender"}]}
    for key, value in change.items():
        if value is None:
            del t[key]
        else:
            t[key] = value
    return t


def seeds_task():
    t = "fuzz_task"
    put(t, "pronoun", jdump(task()))
    base = task()
    put(t, "no_pairs_no_bos", jdump(task(bos=False, pairs=None, name=None, hook=None)))
    put(t, "utf8_and_bytes", jdump(task(prompts=[
        dict(base["prompts"][0], text="L'\u00e9t\u00e9 \u2211 \U0001f600 \x7f", answer="The",
             wrong="\u00e9t\u00e9"), base["prompts"][1]], pairs=[])))
    bad = {
        "bad_answer_two_tokens": lambda t: t["prompts"][0].update(answer="she said"),
        "bad_answer_is_wrong": lambda t: t["prompts"][0].update(wrong="she"),
        "bad_label_unknown": lambda t: t["prompts"][1]["labels"].update(name="Nobody"),
        "bad_pair_same": lambda t: t["pairs"][0].update(counterfactual=0),
        "bad_pair_same_answer": lambda t: t["pairs"][0].update(counterfactual=2),
        "bad_pair_index": lambda t: t["pairs"][1].update(base=3),
        "bad_pair_fraction": lambda t: t["pairs"][0].update(base=0.5),
        "bad_pair_attribute": lambda t: t["pairs"][1].update(attribute="template"),
        "bad_duplicate_attribute": lambda t: t["attributes"][1].update(name="name"),
        "bad_duplicate_value": lambda t: t["attributes"][0]["values"].append("Tim"),
        "bad_bos_type": lambda t: t.update(bos="yes"),
        "bad_empty_prompts": lambda t: t.update(prompts=[]),
    }
    for name, change in bad.items():
        b = task()
        change(b)
        put(t, name, jdump(b))
    put(t, "bad_truncated", jdump(task())[:100])
    put(t, "bad_not_object", "[1, 2]")
    put(t, "invalid_utf8_names", jdump(task()).encode().replace(b"Lily", b"L\xffly"))


def pair_line(clean, patch, a_clean, a_patch):
    o = {"clean_prefix": clean, "clean_answer": a_clean}
    if patch is not None:
        o["patch_prefix"] = patch
    if a_patch is not None:
        o["patch_answer"] = a_patch
    return jdump(o)


def template(**change):
    t = {"templates": ["Once upon a time, there was a {noun} named {name}.",
                       "{name} was a {size} {noun}."],
         "shared": {"size": ["cat", "dog"]},
         "classes": [{"answer": " She", "slots": {"noun": ["girl"], "name": ["Lily", "Mia"]}},
                     {"answer": " He", "slots": {"noun": ["boy"], "name": ["Tim", "Tom"]}}]}
    for key, value in change.items():
        if value is None:
            del t[key]
        else:
            t[key] = value
    return jdump(t)


def seeds_prompt_pairs():
    t = "fuzz_prompt_pairs"
    girl = "Once upon a time, there was a girl named Lily."
    boy = "Once upon a time, there was a boy named Tim."
    lines = [pair_line(girl, boy, " She", " He"), pair_line(boy, girl, " He", " She"),
             pair_line("The cats", "The keys", " are", " is")]
    put(t, "pairs_patched", "\n".join(lines) + "\n")
    put(t, "pairs_zero_ablation", pair_line(girl, None, " She", None) + "\n"
        + pair_line("The dog", None, " is", None))
    put(t, "pairs_blank_lines_crlf", "\r\n" + lines[0] + "\r\n  \t\r\n" + lines[2] + "\r\n")
    put(t, "pairs_clean_answers_only", pair_line(girl, boy, " She", None))
    put(t, "bad_pairs_mixed", lines[0] + "\n" + pair_line(girl, None, " She", None))
    put(t, "bad_pairs_unequal", pair_line("The cat", "The kite", " is", " is"))
    put(t, "bad_pairs_answer_two_tokens", pair_line(girl, boy, " She was", " He"))
    put(t, "bad_pairs_answer_merges_back", pair_line("The ca", "The do", "t", "g"))
    put(t, "bad_pairs_not_object", lines[0] + "\n[1]\n")
    put(t, "bad_pairs_missing_field", jdump({"clean_prefix": girl}))
    put(t, "bad_pairs_blank", " \n\t\n")
    put(t, "bad_pairs_nul", lines[0][:40] + "\0" + lines[0][40:])


def seeds_pair_templates():
    t = "fuzz_pair_templates"
    # Byte b, then the template: n = 1 + (b >> 1 & 1), seed b >> 2 (fuzz_pair_templates.c).
    put(t, "template_one", b"\x00" + template().encode())
    put(t, "template_two_seed1", b"\x06" + template().encode())
    put(t, "template_no_shared", b"\x02" + template(
        templates=["The {noun} named {name}"], shared=None).encode())
    put(t, "template_three_classes", b"\x02" + template(classes=[
        {"answer": " she", "slots": {"noun": ["girl"], "name": ["Lily"]}},
        {"answer": " he", "slots": {"noun": ["boy"], "name": ["Tim"]}},
        {"answer": " they", "slots": {"noun": ["cats"], "name": ["Tim"]}}]).encode())
    put(t, "bad_template_unknown_slot", b"\x00" + template(templates=["A {colour} cat"]).encode())
    put(t, "bad_template_unclosed", b"\x00" + template(templates=["A {noun cat"]).encode())
    put(t, "bad_template_long_slot", b"\x00" + template(templates=["{" + "x" * 70 + "}"]).encode())
    put(t, "bad_template_one_class", b"\x00" + template(classes=[
        {"answer": " She", "slots": {"noun": ["girl"]}}]).encode())
    put(t, "bad_template_empty_list", b"\x00" + template(shared={"size": []}).encode())
    put(t, "bad_template_unequal", b"\x02" + template(templates=["The {noun}"], classes=[
        {"answer": " She", "slots": {"noun": ["girl"]}},
        {"answer": " He", "slots": {"noun": ["tall boy"]}}]).encode())
    put(t, "bad_template_repeats", b"\x02" + template(templates=["The {noun}"], classes=[
        {"answer": " She", "slots": {"noun": ["cat"]}},
        {"answer": " He", "slots": {"noun": ["cat"]}}]).encode())
    put(t, "bad_template_not_strings", b"\x00" + template(templates=[7]).encode())
    # The fuzzer's first timeout (made readable): 400 draws that all fail, of prompts that run.c's
    # merge loop tokenized in O(n m) lookups (tests/test_fuzz_regressions.c has a slower one).
    put(t, "bad_template_timeout", b"\x0a" + template(classes=[
        {"answer": " She", "slots": {"noun": ["girl"], "name": ["Lily", "Miaa"]}},
        {"answer": " He", "slots": {"noun": ["boy"], "name": ["T" + "I" * 100]}}]).encode())


SEEDS = {"fuzz_safetensors": seeds_safetensors, "fuzz_saelens": seeds_saelens,
         "fuzz_sparsify": seeds_sparsify, "fuzz_dictionary_learning": seeds_dictionary_learning,
         "fuzz_torch_pt": seeds_torch_pt, "fuzz_llama2_model": seeds_llama2_model,
         "fuzz_llama2_tokenizer": seeds_llama2_tokenizer, "fuzz_graph_json": seeds_graph_json,
         "fuzz_task": seeds_task, "fuzz_prompt_pairs": seeds_prompt_pairs,
         "fuzz_pair_templates": seeds_pair_templates}

if __name__ == "__main__":
    # Every target (the whole corpus is rewritten), or the ones named: fuzz/make_corpus.py fuzz_task
    import sys
    names = sys.argv[1:] or list(SEEDS)
    for name in names:
        shutil.rmtree(os.path.join(ROOT, name), ignore_errors=True)
    for name in names:
        SEEDS[name]()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(ROOT) for f in fs)
    print("corpus: %d bytes" % total)
