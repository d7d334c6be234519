"""What each kind of RNN dropout costs in training speed, against the same model with no dropout at all.

Each variant is the ptb preset's language model (same shape, same initial weights) with one
regulariser switched on; all of them train on the same PTB windows in the same process, in
alternating steps (none, variational, ..., none, variational, ...), so a noisy machine's drift hits
them alike. A step is a whole rnnlab training step (`train_step`: forward, backward, clip, SGD).

- variational: recurrent_dropout 0.5, one mask for the window shared by the batch: masked W_hh
  columns on the fused kernel (the document's recipe; goal >= 0.9x no dropout at ptb-medium shape);
- variational + locked: the same with locked (variational) input/hidden/output dropout 0.5, Gal &
  Ghahramani 2016's full recipe;
- weight_drop 0.5: DropConnect on W_hh through functional_call, fused kernel;
- per_sequence: recurrent_dropout 0.5, a mask per sequence: step by step on the reference cells;
- naive: recurrent_dropout 0.5, a fresh mask per step: step by step on the reference cells.

    python bench/dropout_speed.py                        # ptb-medium shape
    python bench/dropout_speed.py --shape ptb-small --steps 40 --rounds 2

Prints ms per step and the throughput ratio to "none" (over all rounds), and each round's ratio.
Threads: torch's default (2 here). ``--device cuda`` times the same on a GPU (synchronised per step).
"""

from __future__ import annotations

import argparse

import torch

from common import compare_variants
from rnnlab.config import load_config

LOCKED = ["regularization.input_dropout=0.5", "regularization.hidden_dropout=0.5",
          "regularization.output_dropout=0.5", "regularization.dropout_kind=variational"]
RECURRENT = ["regularization.recurrent_dropout=0.5"]
VARIANTS = {
    "none": [],
    "variational": RECURRENT,
    "variational + locked": [*RECURRENT, *LOCKED],
    "weight_drop": ["regularization.weight_drop=0.5"],
    "per_sequence": [*RECURRENT, "regularization.recurrent_dropout_kind=variational_per_sequence"],
    "naive": [*RECURRENT, "regularization.recurrent_dropout_kind=naive"],
}
# Only the shape of the preset: its own dropout off, so "none" has none.
NO_DROPOUT = ["regularization.input_dropout=0", "regularization.hidden_dropout=0", "regularization.output_dropout=0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="ptb-medium", help="preset whose model shape and bptt to use")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per variant and round (default: per shape)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    steps = args.steps or (60 if load_config(args.shape).model.hidden_size <= 200 else 15)
    compare_variants(args.shape, {name: VARIANTS[name] for name in args.variants}, steps, args.rounds,
                     torch.device(args.device), NO_DROPOUT)


if __name__ == "__main__":
    main()
