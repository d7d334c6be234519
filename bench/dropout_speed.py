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
import copy

import torch

from common import time_alternating, training_steps
from rnnlab.config import RegularizationConfig, load_config
from rnnlab.data import batchify, load_corpus
from rnnlab.models import RNNLanguageModel

LOCKED = {"input_dropout": 0.5, "hidden_dropout": 0.5, "output_dropout": 0.5, "dropout_kind": "variational"}
VARIANTS = {
    "none": {},
    "variational": {"recurrent_dropout": 0.5},
    "variational + locked": {"recurrent_dropout": 0.5, **LOCKED},
    "weight_drop": {"weight_drop": 0.5},
    "per_sequence": {"recurrent_dropout": 0.5, "recurrent_dropout_kind": "variational_per_sequence"},
    "naive": {"recurrent_dropout": 0.5, "recurrent_dropout_kind": "naive"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="ptb-medium", help="preset whose model shape and bptt to use")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per variant and round (default: per shape)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)

    config = load_config(args.shape)
    m, t = config.model, config.train
    steps = args.steps or (60 if m.hidden_size <= 200 else 15)
    corpus = load_corpus(config.data)
    columns = batchify(corpus.splits["train"], t.batch_size).to(device)
    torch.manual_seed(t.seed)
    base = RNNLanguageModel.from_config(m, len(corpus.vocab))
    runs = {}
    for name in args.variants:
        model = RNNLanguageModel.from_config(m, len(corpus.vocab), RegularizationConfig(**VARIANTS[name]))
        model.load_state_dict(copy.deepcopy(base.state_dict()))  # the same initial weights for every variant
        runs[name] = training_steps(model.to(device), columns, t)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; {args.shape} shape: "
          f"{m.num_layers}x{m.hidden_size}, bptt {t.bptt}, batch {t.batch_size}; {steps} steps x {args.rounds} rounds")
    rounds = [time_alternating(runs, steps, device) for _ in range(args.rounds)]
    total = {name: sum(r[name] for r in rounds) for name in runs}
    reference = "none" if "none" in runs else next(iter(runs))
    for name in runs:
        per_round = [round(r[reference] / r[name], 3) for r in rounds]
        print(f"{name:<21} {1000 * total[name] / (steps * args.rounds):8.1f} ms/step  "
              f"ratio to {reference} {total[reference] / total[name]:.3f}  (per round {per_round})")


if __name__ == "__main__":
    main()
