"""Running the `sae` tool ($SAE_CLI) from the CLI tests."""

import os
import subprocess

CLI = os.environ.get("SAE_CLI")


def run(*args, timeout=120):
    """`sae ARGS...` with its output captured (arguments converted with str)."""
    assert CLI, "set SAE_CLI to the built `sae` tool"
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def ok(*args, timeout=120):
    """run(), asserting exit status 0 (stderr in the message otherwise)."""
    r = run(*args, timeout=timeout)
    assert r.returncode == 0, (args, r.stderr)
    return r
