"""Alpha diversity by scikit-bio, the oracle for the plugin's diversity module.

Reads JSON from stdin: {"samples": {"name": [count, ...], ...}}.
Writes JSON to stdout: {"skbio": version, "samples": {"name": {"observed", "shannon", "simpson",
"chao1", "goods_coverage"}, ...}}, with Shannon in natural logarithms (base e) and the
bias-corrected Chao1, the definitions the plugin states.
"""

import json
import math
import sys

import skbio
from skbio.diversity import alpha


def main():
    samples = json.load(sys.stdin)["samples"]
    out = {}
    for name, counts in samples.items():
        out[name] = {
            "observed": int(alpha.observed_features(counts)),
            "shannon": float(alpha.shannon(counts, base=math.e)),
            "simpson": float(alpha.simpson(counts)),
            "chao1": float(alpha.chao1(counts, bias_corrected=True)),
            "goods_coverage": float(alpha.goods_coverage(counts)),
        }
    json.dump({"skbio": skbio.__version__, "samples": out}, sys.stdout)


if __name__ == "__main__":
    main()
