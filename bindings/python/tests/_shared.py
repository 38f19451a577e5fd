"""Where the shared oracle data lives: $SAE_SHARED_DIR, default <repo>/../shared."""

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SHARED_DIR = Path(os.environ.get("SAE_SHARED_DIR") or REPO.parent / "shared")
NATIVE_DIR = SHARED_DIR / "oracle" / "native"


def native_cases(predicate=None):
    """Names of the native-format oracle cases whose case.json satisfies ``predicate``.

    When the directory is missing this returns a placeholder name, so that the parametrised
    tests fail instead of being skipped as an empty parameter set.
    """
    if not NATIVE_DIR.is_dir():
        return ["<missing %s>" % NATIVE_DIR]
    names = []
    for case_dir in sorted(NATIVE_DIR.iterdir()):
        meta_path = case_dir / "case.json"
        if meta_path.is_file() and (predicate is None
                                    or predicate(json.loads(meta_path.read_text()))):
            names.append(case_dir.name)
    return names
