"""What the benchmark drivers (bench/*.py) share: finding a built benchmark program, making sure
Debian's PyTorch is importable (installing python3-torch with apt-get as root if it is not), and
reading the JSON object a program prints."""
import glob
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PYTHON = "/usr/bin/python3"  # Debian's, with numpy and python3-torch


def find_bench_binary(name, explicit, env_var):
    """Path of benchmark program `name`: `explicit` if given, else $env_var, else the most
    recently built build*/bench/name under the repository or beside it."""
    if explicit:
        return explicit
    if os.environ.get(env_var):
        return os.environ[env_var]
    patterns = [os.path.join(HERE, name),
                os.path.join(REPO, "build*", "bench", name),
                os.path.join(os.path.dirname(REPO), "build*", "bench", name)]
    found = [p for pat in patterns for p in glob.glob(pat) if os.access(p, os.X_OK)]
    if not found:
        sys.exit("%s not found; build it (cmake --build BUILD --target %s) and pass --bin or set "
                 "%s" % (name, name, env_var))
    return max(found, key=os.path.getmtime)


def torch_version():
    r = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_torch(errors):
    """The torch version PYTHON imports, installing python3-torch first if needed; None (with the
    reason appended to errors) when that is impossible."""
    version = torch_version()
    if version:
        return version
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        errors.append("torch is missing and apt-get cannot run here: apt-get install python3-torch")
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "python3-torch"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            errors.append("%s failed: %s" % (" ".join(cmd), r.stderr.strip()[-500:]))
            return None
    version = torch_version()
    if not version:
        errors.append("python3-torch is installed but %s cannot import torch" % PYTHON)
    return version


def parse_json_object(text):
    """The JSON object in a program's output (tolerates lines before or after it)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the output")
    return json.loads(text[start:end + 1])
