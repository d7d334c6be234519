"""Whole rnnlab training steps of a preset's variants against each other, alternating step by step in one process
on the same PTB windows (bench/common.compare_variants), with the ratio to the first variant.

    python bench/variants.py ptb-cpu30 "full=" "sampled=model.output=sampled output.num_samples=1024"
    python bench/variants.py ptb-small "plain=" "residual=model.num_layers=4 model.skip=residual" --steps 30

Each variant is NAME=KEY=VALUE KEY=VALUE ... (an empty list: the preset as it is).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import compare_variants  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("variants", nargs="+", help='NAME=KEY=VALUE KEY=VALUE ..., e.g. "sampled=model.output=sampled"')
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    variants = {}
    for item in args.variants:
        name, _, overrides = item.partition("=")
        variants[name] = overrides.split()
    compare_variants(args.preset, variants, args.steps, args.rounds, torch.device(args.device))


if __name__ == "__main__":
    main()
