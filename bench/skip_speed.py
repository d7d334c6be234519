"""What skip connections and dilated recurrence cost in training speed, against the plain stack.

Each variant is the preset's language model with ``--layers`` layers (default 4) and one change:
residual or dense connections (``model.skip``), or dilations 1, 2, 4, 8, ... (``model.dilations``);
all train on the same PTB windows in the same process, in alternating steps. A dilated layer folds
its d interleaved sub-sequences into the batch and stays on the fused kernel (two kernel calls when
the window length is not a multiple of d), so it should cost about what the plain stack does.

    python bench/skip_speed.py                              # ptb-small shape, 4 layers
    python bench/skip_speed.py --shape ptb-medium --layers 4 --steps 10 --rounds 2

Prints ms per step and the throughput ratio to the plain stack. Threads: torch's default (2 here).
"""

from __future__ import annotations

import argparse

import torch

from common import compare_variants
from rnnlab.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="ptb-small", help="preset whose layer size, bptt and batch to use")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=0, help="timed steps per variant and round (default: per shape)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    steps = args.steps or (30 if load_config(args.shape).model.hidden_size <= 200 else 10)
    dilations = [2**k for k in range(args.layers)]
    variants = {
        "plain": [],
        "residual": ["model.skip=residual"],
        "dense": ["model.skip=dense"],
        f"dilated {dilations}": [f"model.dilations={dilations}"],
    }
    compare_variants(args.shape, variants, steps, args.rounds, torch.device(args.device),
                     [f"model.num_layers={args.layers}"])


if __name__ == "__main__":
    main()
