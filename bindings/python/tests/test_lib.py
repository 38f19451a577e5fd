"""How the package finds libsae, and the error type it raises."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import sae
from sae import _lib

PACKAGE_DIR = Path(sae.__file__).resolve().parent


def run_python(code, env_update, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("SAE_LIBRARY", "PYTHONPATH")}
    env.update(env_update)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_sae_library_env_is_authoritative(tmp_path):
    result = run_python("import sae", {"SAE_LIBRARY": str(tmp_path / "nope.so"),
                                       "PYTHONPATH": str(PACKAGE_DIR.parent)}, tmp_path)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "SAE_LIBRARY" in result.stderr


def test_library_in_package_directory(tmp_path):
    copy = tmp_path / "sae"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "libsae.so*"))
    (copy / "libsae.so").symlink_to(Path(_lib.path).resolve())
    result = run_python("import sae, sae._lib; print(sae._lib.path); print(sae.version())",
                        {"PYTHONPATH": str(tmp_path)}, tmp_path)
    assert result.returncode == 0, result.stderr
    path, version = result.stdout.split()
    assert path == str(copy / "libsae.so")
    assert version == sae.version()


def test_version_matches_bindings():
    major, minor, _ = (int(p) for p in sae.version().split("."))
    assert (major, minor) == _lib.BINDINGS_VERSION


def test_sae_error():
    try:
        _lib.lib.sae_st_open(_lib.new_handle(), b"/nonexistent/file.safetensors")
    except sae.SaeError as exc:
        assert exc.code < 0
        assert exc.status == _lib.status_str(exc.code) != ""
        assert "/nonexistent/file.safetensors" in exc.message
        assert exc.message in str(exc)
        assert isinstance(exc, Exception)
    else:
        raise AssertionError("opening a missing file did not raise")
