"""Does a fresh dropout mask at every step hurt memory, and one mask for all steps not? (The source
document's fourth remedy, Gal & Ghahramani 2016.)

A long-range task that an LSTM without dropout learns, trained with recurrent dropout p on h_{t-1}:
none, naive (a fresh mask every step) and variational (one mask for the window), the same steps and
seeds for each, several seeds. Prints a markdown table of the test metric (next to the task's "not
learned" baseline) and writes the runs and one plot per seed to OUT.

    python experiments/recurrent_dropout.py runs/recurrent-dropout   # adding, T = 50, 128 units, 5,000 steps, p 0.25
    python experiments/recurrent_dropout.py OUT --task copy --length 20 --p 0.5 --seeds 1 2 3

Every run is `rnnlab train --preset {task}-lstm` with the overrides printed above the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seeded import run_variants

VARIANTS = {
    "none": [],
    "naive": ["regularization.recurrent_dropout={p}", "regularization.recurrent_dropout_kind=naive"],
    "variational": ["regularization.recurrent_dropout={p}", "regularization.recurrent_dropout_kind=variational"],
}
PRESETS = {"adding": "adding-lstm", "copy": "copy-lstm", "temporal_order": "temporal-order-lstm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", default="adding", choices=list(PRESETS))
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=25, help="epochs of the preset's steps_per_epoch batches")
    parser.add_argument("--p", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()

    common = [f"task.length={args.length}", f"model.hidden_size={args.hidden}", f"train.epochs={args.epochs}"]
    print(f"preset {PRESETS[args.task]}, overrides: {' '.join(common)}; recurrent dropout p = {args.p}")
    variants = {name: [*common, *(e.format(p=args.p) for e in extra)] for name, extra in VARIANTS.items()}
    run_variants(args.out, PRESETS[args.task], variants, args.seeds, f"recurrent dropout (p = {args.p})")


if __name__ == "__main__":
    main()
