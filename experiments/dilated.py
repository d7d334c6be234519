"""Does dilated recurrence carry a tanh RNN's memory where the plain one loses it? (The source
document's third remedy across time; Chang et al. 2017.)

The adding-dilated-rnn preset (4 tanh layers of 64 units, dilations 1, 2, 4, 8) against the same
stack with every dilation 1, at a length where the plain tanh RNN stays at the "not learned"
baseline; the same steps and seeds for both. Prints a markdown table of the test metric next to the
baseline, and writes the runs and one plot per seed to OUT.

    python experiments/dilated.py runs/dilated                       # adding, T = 100, 2,000 steps, seeds 1-3
    python experiments/dilated.py OUT --task copy --length 50 --epochs 20

Every run is `rnnlab train --preset adding-dilated-rnn` with the overrides printed above the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seeded import run_variants

from rnnlab.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", default="adding", choices=("adding", "copy", "temporal_order"))
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the preset's 200 batches")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()

    dilations = load_config("adding-dilated-rnn").model.dilations
    common = [f"task.name={args.task}", f"task.length={args.length}", f"train.epochs={args.epochs}"]
    print(f"preset adding-dilated-rnn, overrides: {' '.join(common)}")
    variants = {"plain": [*common, f"model.dilations={[1] * len(dilations)}"], f"dilated {list(dilations)}": common}
    run_variants(args.out, "adding-dilated-rnn", variants, args.seeds, f"{args.task}, T = {args.length}")


if __name__ == "__main__":
    main()
