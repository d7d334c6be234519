"""Training throughput: rnnlab's trainer against the loop a user writes instead (`rnnlab bench` is the command
users run; this script keeps the ptb-small / ptb-medium pair behind the README's parity figures).

The baseline is the PyTorch word_language_model example's way: nn.Embedding -> nn.LSTM ->
nn.Linear -> log_softmax + NLLLoss, clip_grad_norm_, a manual SGD update over the parameters and
``loss.item()`` every step. rnnlab runs its whole Trainer (window slicing, state carrying,
clipping with the norm recorded, metrics, observers). Both train on the same PTB token columns,
in the same process, in alternating rounds; the first step of each run is warm-up and not timed.

    python bench/train_speed.py                      # ptb-small and ptb-medium shapes
    python bench/train_speed.py --shapes ptb-small --steps 40 --rounds 5

Prints tokens/s for each side (median over rounds) and the ratio rnnlab / baseline.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from common import trainer_tokens_per_s
from rnnlab.benchmark import baseline_run
from rnnlab.config import load_config
from rnnlab.data import batchify, load_corpus


def zaremba_dropout(config) -> float:
    """The one non-recurrent rate the example's model takes (its inputs, between layers and outputs)."""
    reg = config.regularization
    if not reg.input_dropout == reg.hidden_dropout == reg.output_dropout or reg.recurrent_dropout or reg.weight_drop:
        raise SystemExit("train_speed.py compares presets whose only dropout is one non-recurrent rate")
    return reg.hidden_dropout


def baseline_tokens_per_s(config, columns: torch.Tensor, vocab: int, steps: int) -> float:
    """The example's loop (rnnlab.benchmark.baseline_run, what `rnnlab bench` runs) on the CPU."""
    zaremba_dropout(config)
    seconds = baseline_run(config, columns, vocab, steps, torch.device("cpu"))
    return steps * config.train.bptt * config.train.batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["ptb-small", "ptb-medium"])
    parser.add_argument("--steps", type=int, default=0, help="timed steps per run (default: per shape)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    full = load_corpus(load_config().data)
    # Tiny valid/test splits: the end-of-run evaluation is outside the timed steps anyway.
    corpus = full.with_short_eval(500)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device cpu, {args.rounds} rounds, median tokens/s")
    for shape in args.shapes:
        config = load_config(shape, overrides=["train.device=cpu", "train.log_every=50"])
        steps = args.steps or (60 if config.model.hidden_size <= 200 else 15)
        columns = batchify(full.splits["train"], config.train.batch_size)
        ours, theirs = [], []
        for _ in range(args.rounds):
            theirs.append(baseline_tokens_per_s(config, columns, len(full.vocab), steps))
            ours.append(trainer_tokens_per_s(config, corpus, steps)[0])
        base, mine = statistics.median(theirs), statistics.median(ours)
        print(f"{shape:<11} {config.model.num_layers}x{config.model.hidden_size} bptt {config.train.bptt} "
              f"dropout {zaremba_dropout(config)}: baseline {base:8.0f}  rnnlab {mine:8.0f}  "
              f"ratio {mine / base:.3f}  (rounds: baseline {[round(x) for x in theirs]}, "
              f"rnnlab {[round(x) for x in ours]})")


if __name__ == "__main__":
    main()
