"""Shared fixtures. The library comes from SAE_LIBRARY (see sae/_lib.py); the oracle data from
SAE_SHARED_DIR (default <repo>/../shared). Tests that need the data fail, never skip, without it."""

import pytest

from _shared import NATIVE_DIR, SHARED_DIR


@pytest.fixture(scope="session")
def shared_dir():
    assert SHARED_DIR.is_dir(), "%s is missing (set SAE_SHARED_DIR)" % SHARED_DIR
    return SHARED_DIR


@pytest.fixture(scope="session")
def native_dir(shared_dir):
    assert NATIVE_DIR.is_dir(), "%s is missing" % NATIVE_DIR
    return NATIVE_DIR
