"""The recurrent stack against PyTorch's multi-layer module: does composing layers in Python cost speed?

rnnlab's RecurrentStack runs one single-layer fused module per layer (so that dropout, skip links and
weight transformations can reach between layers); before it, rnnlab ran one multi-layer nn.LSTM.
Both are timed here in the same process on the same PTB windows, on identical weights, in
alternating steps (old, new, old, new, ...) so that drift on a noisy machine hits both alike:

- step: a whole rnnlab training step (embedding -> recurrent part -> softmax -> backward -> clip ->
  SGD) with ``model.rnn`` either the stack or an nn.LSTM holding the same weights;
- recurrent: forward + backward of the recurrent part alone on the same (T, B, E) input.

    python bench/stack_speed.py                          # ptb-small and ptb-medium shapes
    python bench/stack_speed.py --shapes ptb-small --steps 200

Prints milliseconds per step for each side (over all rounds) and the ratio of throughputs
stack / multi-layer module (>= 0.97 is the goal), with each round's ratio to show the noise.
Threads: torch's default (set OMP_NUM_THREADS to change).
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

from common import recurrent_passes, time_alternating, training_steps
from rnnlab.config import load_config
from rnnlab.data import batchify, load_corpus
from rnnlab.models import RNNLanguageModel
from rnnlab.nn.stack import RecurrentStack


def multilayer_copy(stack: RecurrentStack, dropout: float) -> nn.LSTM:
    """An nn.LSTM with ``stack``'s weights under torch.nn's multi-layer names."""
    module = nn.LSTM(stack.input_size, stack.hidden_size, stack.num_layers, dropout=dropout)
    module.load_state_dict(stack.multilayer_state_dict())
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["ptb-small", "ptb-medium"])
    parser.add_argument("--steps", type=int, default=0, help="timed steps per side (default: per shape)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat the comparison; the ratio of the summed times")
    args = parser.parse_args()

    corpus = load_corpus(load_config().data)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    for shape in args.shapes:
        config = load_config(shape)
        m, t = config.model, config.train
        steps = args.steps or (150 if m.hidden_size <= 200 else 40)
        torch.manual_seed(t.seed)
        new = RNNLanguageModel.from_config(m, len(corpus.vocab), config.regularization)
        old = copy.deepcopy(new)
        old.rnn = multilayer_copy(new.rnn, config.regularization.hidden_dropout if m.num_layers > 1 else 0.0)
        columns = batchify(corpus.splits["train"], t.batch_size)
        x = torch.randn(t.bptt, t.batch_size, m.embedding_dim)
        comparisons = {
            "step": {"module": training_steps(old, columns, t), "stack": training_steps(new, columns, t)},
            "recurrent": {"module": recurrent_passes(old.rnn, x), "stack": recurrent_passes(new.rnn, x)},
        }
        for label, runs in comparisons.items():
            rounds = [time_alternating(runs, steps) for _ in range(args.rounds)]
            total = {name: sum(r[name] for r in rounds) for name in runs}
            per_round = [round(r["module"] / r["stack"], 3) for r in rounds]
            ms = {name: 1000 * s / (steps * args.rounds) for name, s in total.items()}
            print(f"{shape:<11} {m.num_layers}x{m.hidden_size} bptt {t.bptt} batch {t.batch_size} {label:<9}: "
                  f"multi-layer module {ms['module']:7.2f} ms  stack {ms['stack']:7.2f} ms  "
                  f"ratio {total['module'] / total['stack']:.3f}  (per round {per_round}; {steps} steps each)")


if __name__ == "__main__":
    main()
