"""What skipping non-finite steps costs: rnnlab training steps with it (the default) and without it,
alternating step by step in one process on the same PTB windows (ptb-small shape).

    python bench/nonfinite_check.py            # 60 steps x 3 rounds per variant

The skip is decided on the device: per-parameter gradient norms (the global norm's own), a finite flag that the
fused optimizer takes as ``found_inf`` (as torch.amp.GradScaler does), and the carried state chosen by
``torch.where``; nothing is read back to the host.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import time_alternating  # noqa: E402
from rnnlab.config import load_config  # noqa: E402
from rnnlab.data import batchify, load_corpus  # noqa: E402
from rnnlab.models import RNNLanguageModel  # noqa: E402
from rnnlab.training.loop import train_step  # noqa: E402
from rnnlab.training.optim import make_optimizer  # noqa: E402


def stepper(model, columns, train, check: bool):
    optimizer = make_optimizer(model.parameters(), train)
    status = {"state": None, "index": 0}
    windows = (columns.size(0) - 1) // train.bptt

    def step() -> None:
        begin = (status["index"] % windows) * train.bptt
        status["index"] += 1
        result = train_step(model, optimizer, columns[begin : begin + train.bptt],
                            columns[begin + 1 : begin + 1 + train.bptt], status["state"], clip_norm=train.clip_norm,
                            loss_average=train.loss_average, skip_nonfinite=check)
        status["state"] = result.state

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="ptb-small")
    args = parser.parse_args()
    config = load_config(args.preset)
    corpus = load_corpus(config.data)
    columns = batchify(corpus.splits["train"], config.train.batch_size)
    torch.manual_seed(config.train.seed)
    model = RNNLanguageModel.from_config(config.model, len(corpus.vocab), config.regularization)
    runs = {"with the check": stepper(model, columns, config.train, True),
            "without": stepper(copy.deepcopy(model), columns, config.train, False)}
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads; {args.preset} shape, "
          f"{args.steps} steps x {args.rounds} rounds")
    timed = [time_alternating(runs, args.steps) for _ in range(args.rounds)]
    total = {name: sum(r[name] for r in timed) for name in runs}
    per_round = [round(r["with the check"] / r["without"] - 1, 4) for r in timed]
    print(f"with the check {1000 * total['with the check'] / (args.steps * args.rounds):.1f} ms/step, without "
          f"{1000 * total['without'] / (args.steps * args.rounds):.1f} ms/step: cost "
          f"{100 * (total['with the check'] / total['without'] - 1):+.2f}% (per round {per_round})")


if __name__ == "__main__":
    main()
