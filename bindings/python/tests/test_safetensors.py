"""sae.save_file / sae.load_file / sae.load_metadata, checked against an independent pure-Python
reading of the same files."""

import json
import struct

import numpy as np
import pytest

import sae

# safetensors dtype names -> numpy dtypes, for the independent reader below.
_NUMPY = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "I16": "<i2", "U16": "<u2", "I32": "<i4",
          "U32": "<u4", "I64": "<i8", "U64": "<u8", "F16": "<f2", "F32": "<f4", "F64": "<f8"}


def read_plain(path):
    """(header dict, {name: array}) parsed in pure Python, following FORMATS.md."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    assert (8 + n) % 8 == 0, "writers pad the header so that 8 + N is a multiple of 8"
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[8 + n + begin:8 + n + end]
        tensors[name] = np.frombuffer(raw, dtype=_NUMPY[entry["dtype"]]).reshape(entry["shape"])
    return header, tensors


def sample_tensors():
    rng = np.random.default_rng(0)
    return {
        "weights": rng.normal(size=(5, 7)).astype(np.float32),
        "half": rng.normal(size=(3, 4)).astype(np.float16),
        "double": rng.normal(size=(6,)),
        "ids": rng.integers(-2**40, 2**40, size=(2, 3, 4), dtype=np.int64),
        "counts": rng.integers(0, 2**31, size=9, dtype=np.uint32),
        "small": rng.integers(-100, 100, size=(4,), dtype=np.int8),
        "bytes": rng.integers(0, 255, size=(3,), dtype=np.uint8),
        "shorts": rng.integers(-3000, 3000, size=(2, 2), dtype=np.int16),
        "ushorts": rng.integers(0, 60000, size=(3,), dtype=np.uint16),
        "ints": rng.integers(-2**30, 2**30, size=(3,), dtype=np.int32),
        "big": rng.integers(0, 2**63, size=(2,), dtype=np.uint64),
        "mask": rng.random(10) > 0.5,
        "scalar": np.float32(3.5),
        "int_scalar": np.int64(-7),
        "transposed": rng.normal(size=(4, 3)).astype(np.float32).T,  # not C-contiguous
        "big_endian": rng.normal(size=(5,)).astype(">f4"),
    }


def test_round_trip(tmp_path):
    tensors = sample_tensors()
    metadata = {"format": "pt", "note": "héllo wörld", "empty": ""}
    path = tmp_path / "t.safetensors"
    sae.save_file(tensors, path, metadata=metadata)
    loaded = sae.load_file(path)
    assert list(loaded) == sorted(tensors)  # name order
    for name, original in tensors.items():
        got = loaded[name]
        original = np.asarray(original)
        assert got.shape == original.shape, name
        if np.issubdtype(original.dtype, np.floating):
            assert got.dtype == np.float32, name  # floats load as float32
            np.testing.assert_array_equal(got, original.astype(np.float32), err_msg=name)
        else:
            assert got.dtype == original.dtype, name
            np.testing.assert_array_equal(got, original, err_msg=name)
        assert got.flags.writeable and got.flags.c_contiguous
    assert sae.load_metadata(path) == metadata


def test_file_matches_plain_reader(tmp_path):
    tensors = sample_tensors()
    path = tmp_path / "t.safetensors"
    sae.save_file(tensors, path, metadata={"a": "b"})
    header, plain = read_plain(path)
    assert header["__metadata__"] == {"a": "b"}
    assert header["double"]["dtype"] == "F64" and header["half"]["dtype"] == "F16"
    assert header["mask"]["dtype"] == "BOOL" and header["ids"]["dtype"] == "I64"
    assert header["scalar"]["shape"] == []
    for name, original in tensors.items():
        np.testing.assert_array_equal(plain[name], np.asarray(original), err_msg=name)
    # Tensors tile the data buffer exactly, in name order.
    ranges = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    assert ranges[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_no_metadata(tmp_path):
    path = tmp_path / "t.safetensors"
    sae.save_file({"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, path)
    assert sae.load_metadata(path) == {}
    np.testing.assert_array_equal(sae.load_file(path)["x"], np.arange(6).reshape(2, 3))


def test_zero_sized_tensor(tmp_path):
    path = tmp_path / "t.safetensors"
    sae.save_file({"empty": np.zeros((0, 4), np.float32), "e_int": np.zeros(0, np.int64),
                   "x": np.ones(2, np.float32)}, path)
    loaded = sae.load_file(path)
    assert loaded["empty"].shape == (0, 4) and loaded["empty"].dtype == np.float32
    assert loaded["e_int"].shape == (0,) and loaded["e_int"].dtype == np.int64
    np.testing.assert_array_equal(loaded["x"], [1, 1])


def test_overwrite(tmp_path):
    path = tmp_path / "t.safetensors"
    sae.save_file({"a": np.ones(3, np.float32)}, path)
    sae.save_file({"b": np.zeros(2, np.int32)}, path)
    assert list(sae.load_file(path)) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary left


def test_oracle_case_files(shared_dir):
    """The oracle's own files (F32 and I64, 0-d scalars) read the same as the plain reader."""
    files = sorted((shared_dir / "oracle").glob("*.safetensors"))
    assert len(files) >= 17
    for path in files:
        header, plain = read_plain(path)
        loaded = sae.load_file(path)
        assert sorted(loaded) == sorted(plain), path.name
        for name, expected in plain.items():
            got = loaded[name]
            assert got.shape == expected.shape, (path.name, name)
            if expected.dtype.kind == "f":
                assert got.dtype == np.float32
            else:
                assert got.dtype == expected.dtype.newbyteorder("=")
            np.testing.assert_array_equal(got, expected, err_msg="%s %s" % (path.name, name))
        assert sae.load_metadata(path) == header.get("__metadata__", {})


def test_errors(tmp_path):
    with pytest.raises(sae.SaeError) as info:
        sae.load_file(tmp_path / "missing.safetensors")
    assert info.value.code in (-4, -10)
    assert "missing.safetensors" in info.value.message

    good = tmp_path / "good.safetensors"
    sae.save_file({"x": np.arange(64, dtype=np.float32)}, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-16])
    with pytest.raises(sae.SaeError) as info:
        sae.load_file(truncated)
    assert info.value.code == -5

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 16) + b"{not json}      ")
    with pytest.raises(sae.SaeError) as info:
        sae.load_file(garbage)
    assert info.value.code == -5

    huge = tmp_path / "huge_header.safetensors"
    huge.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(sae.SaeError) as info:
        sae.load_file(huge)
    assert info.value.code == -5

    with pytest.raises(TypeError):
        sae.save_file({"c": np.zeros(2, np.complex64)}, tmp_path / "c.safetensors")
    with pytest.raises(TypeError):
        sae.save_file({"x": np.zeros(2, np.float32)}, tmp_path / "m.safetensors",
                      metadata={"n": 3})
    with pytest.raises(ValueError):
        sae.save_file({"x": np.zeros((1,) * 9, np.float32)}, tmp_path / "d.safetensors")
    with pytest.raises(sae.SaeError):
        sae.save_file({"x": np.zeros(2, np.float32)}, tmp_path / "no_dir" / "x.safetensors")
    assert not (tmp_path / "c.safetensors").exists()
