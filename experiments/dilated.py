"""Does dilated recurrence carry a tanh RNN's memory where the plain one loses it? (The source
document's third remedy across time; Chang et al. 2017.)

A dilated-RNN preset (adding-dilated-rnn: 4 tanh layers of 64 units, dilations 1, 2, 4, 8, T = 100;
copy-dilated-rnn: 6 layers of 32, dilations 1 to 32, T = 50) against the same stack with every
dilation 1, at a length where the plain tanh RNN stays at the "not learned" baseline; the same steps
and seeds for both. Prints a markdown table of the test metric next to the
baseline, and writes the runs and one plot per seed to OUT.

    python experiments/dilated.py runs/dilated --epochs 20              # adding, T = 100, 4,000 steps, seeds 1-3
    python experiments/dilated.py runs/dilated-copy --preset copy-dilated-rnn   # copy, T = 50, 3,000 steps

Every run is `rnnlab train --preset PRESET` with the overrides printed above the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seeded import run_variants

from rnnlab.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--preset", default="adding-dilated-rnn", help="adding-dilated-rnn or copy-dilated-rnn")
    parser.add_argument("--task", choices=("adding", "copy", "temporal_order"), help="default: the preset's")
    parser.add_argument("--length", type=int, help="default: the preset's T")
    parser.add_argument("--epochs", type=int, help="epochs of 200 batches (default: the preset's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--dilations", type=int, nargs="+", help="one per layer (default: the preset's)")
    parser.add_argument("--hidden", type=int, help="units per layer (default: the preset's)")
    parser.add_argument("--only", choices=("plain", "dilated"), help="run one of the two (e.g. in two processes)")
    args = parser.parse_args()

    preset = load_config(args.preset)
    dilations = args.dilations or list(preset.model.dilations)
    given = {"task.name": args.task, "task.length": args.length, "train.epochs": args.epochs,
             "model.num_layers": len(dilations), "model.dilations": dilations, "model.hidden_size": args.hidden}
    common = [f"{key}={value}" for key, value in given.items() if value is not None]
    config = load_config(args.preset, overrides=common)
    print(f"preset {args.preset}, overrides: {' '.join(common)}")
    variants = {"plain": [*common, f"model.dilations={[1] * len(dilations)}"], f"dilated {dilations}": common}
    variants = {name: sets for name, sets in variants.items() if args.only in (None, name.split()[0])}
    run_variants(args.out, args.preset, variants, args.seeds, f"{config.task.name}, T = {config.task.length}")


if __name__ == "__main__":
    main()
