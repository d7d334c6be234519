"""Training throughput: rnnlab's trainer against the loop a user writes instead.

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
import time

import torch
import torch.nn.functional as F
from torch import nn

from common import trainer_tokens_per_s
from rnnlab.config import load_config
from rnnlab.data import batchify, load_corpus
from rnnlab.data.corpus import Corpus


class BaselineModel(nn.Module):
    """The word_language_model example's RNNModel (LSTM), written out."""

    def __init__(self, vocab: int, size: int, layers: int, dropout: float, init_range: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, size)
        self.rnn = nn.LSTM(size, size, layers, dropout=dropout)
        self.decoder = nn.Linear(size, vocab)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)

    def forward(self, tokens, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return F.log_softmax(decoded, dim=1), hidden


def zaremba_dropout(config) -> float:
    """The one non-recurrent rate the example's model takes (its inputs, between layers and outputs)."""
    reg = config.regularization
    if not reg.input_dropout == reg.hidden_dropout == reg.output_dropout or reg.recurrent_dropout or reg.weight_drop:
        raise SystemExit("train_speed.py compares presets whose only dropout is one non-recurrent rate")
    return reg.hidden_dropout


def baseline_tokens_per_s(config, columns: torch.Tensor, vocab: int, steps: int) -> float:
    torch.manual_seed(config.train.seed)
    m, t = config.model, config.train
    model = BaselineModel(vocab, m.hidden_size, m.num_layers, zaremba_dropout(config), m.init_range)
    model.train()
    criterion = nn.NLLLoss()
    # The example's mean-per-token loss; lr and clip scaled so the update equals the preset's.
    lr, clip = t.lr * t.bptt, t.clip_norm / t.bptt
    hidden = None
    started, total_loss = 0.0, 0.0
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()  # step 0 is warm-up
        begin = (step * t.bptt) % (columns.size(0) - 1 - t.bptt)
        data, targets = columns[begin : begin + t.bptt], columns[begin + 1 : begin + 1 + t.bptt].reshape(-1)
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden)  # the example's repackage_hidden
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        total_loss += loss.item()
    return steps * t.bptt * t.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["ptb-small", "ptb-medium"])
    parser.add_argument("--steps", type=int, default=0, help="timed steps per run (default: per shape)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    full = load_corpus(load_config().data)
    # Tiny valid/test splits: the end-of-run evaluation is outside the timed steps anyway.
    corpus = Corpus(full.vocab, full.level, {"train": full.splits["train"], "valid": full.splits["valid"][:500],
                                             "test": full.splits["test"][:500]}, full.oov)
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
