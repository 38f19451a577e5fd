#!/usr/bin/env python3
"""Label SAE features by the tokens they fire on most (max-activating examples), for
`sae circuit --labels`: one line "HOOK<TAB>FEATURE<TAB>LABEL" per feature, the label being the
most frequent tokens among the feature's 20 largest activations ("'girl' 'Lily'").

usage: label_features.py TOKENIZER ACTS_DIR OUT.tsv HOOK=SAE_DIR [HOOK=SAE_DIR ...]
ACTS_DIR holds what sae_stories_acts writes: HOOK.f32 activations and tokens.i32.
"""

import collections
import os
import struct
import sys

import numpy as np

import sae

TOP = 20


def pieces(path):
    """The text of each token of a llama2.c tokenizer file."""
    with open(path, "rb") as f:
        data = f.read()
    out, at = [], 4
    while at < len(data):
        _, n = struct.unpack_from("<fi", data, at)
        out.append(data[at + 8:at + 8 + n].decode("utf-8", "replace"))
        at += 8 + n
    return out


def main(tokenizer, acts_dir, out, specs):
    text = pieces(tokenizer)
    tokens = np.fromfile(os.path.join(acts_dir, "tokens.i32"), dtype=np.int32)
    lines = []
    for spec in specs:
        hook, path = spec.split("=", 1)
        with sae.load(path) as d:
            x = np.fromfile(os.path.join(acts_dir, hook + ".f32"), dtype=np.float32)
            f = np.concatenate([d.encode(c) for c in np.array_split(x.reshape(-1, d.d_in), 16)])
        for j in range(f.shape[1]):
            rows = np.argsort(-f[:, j])[:TOP]
            rows = rows[f[rows, j] > 0]
            if len(rows) == 0:
                continue
            common = collections.Counter(text[tokens[r]].strip() for r in rows).most_common(2)
            label = " ".join("'%s'" % t for t, _ in common)
            lines.append("%s\t%d\t%s" % (hook, j, label))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
