"""Quality per CPU-minute: rnnlab's ptb-cpu30 preset against PyTorch's word_language_model example.

Both train on Penn Treebank for the same wall-clock budget (default 30 minutes) on this machine: one
after the other with the machine's threads, or with ``--together`` at the same time, one thread each
(then whatever else the machine does hits both alike). The example runs in its default
configuration (2x200 LSTM, embedding 200, dropout 0.2, untied, SGD lr 20 divided by 4 when an epoch's
validation loss does not improve, clip 0.25, bptt 35, batch 20, loss averaged over tokens, its own
initialisation), written out below as its main.py does it. rnnlab trains the ``ptb-cpu30`` preset with
``train.max_minutes`` set to the budget. Each side validates at every epoch end and once more where the
budget stops it mid-epoch; each is tested with its best validated weights.

    python experiments/ptb_cpu30.py runs/cpu30                 # about an hour: 30 + 30 minutes
    python experiments/ptb_cpu30.py runs/cpu30 --together      # both at once, one thread each: 30 minutes
    python experiments/ptb_cpu30.py runs/cpu30 --minutes 5     # a quick look

Prints a markdown table and writes OUT/summary-<side>.json, OUT/example/metrics.jsonl (the example's records in
rnnlab's format, so `rnnlab plot` draws both: OUT/curves.png) and the rnnlab run in OUT/rnnlab.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.config import load_config
from rnnlab.data import batchify, load_corpus
from rnnlab.plots import plot_runs
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer

SIDES = ("example", "rnnlab")


class ExampleModel(nn.Module):
    """word_language_model's RNNModel for an LSTM, with its init_weights."""

    def __init__(self, vocab: int, size: int = 200, layers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, size)
        self.rnn = nn.LSTM(size, size, layers, dropout=dropout)
        self.decoder = nn.Linear(size, vocab)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)  # the LSTM keeps torch's default init
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, tokens: torch.Tensor, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        return F.log_softmax(self.decoder(self.drop(output)), dim=-1), hidden


def example_evaluate(model: ExampleModel, columns: torch.Tensor, bptt: int = 35) -> float:
    """The example's evaluate(): mean loss per target token over the whole split."""
    model.eval()
    total, hidden = 0.0, None
    with torch.no_grad():
        for begin in range(0, columns.size(0) - 1, bptt):
            length = min(bptt, columns.size(0) - 1 - begin)
            data, targets = columns[begin : begin + length], columns[begin + 1 : begin + 1 + length]
            output, hidden = model(data, hidden)
            total += length * F.nll_loss(output.view(-1, output.size(-1)), targets.reshape(-1)).item()
    return total / (columns.size(0) - 1)


def train_example(corpus, minutes: float, out: Path, seed: int) -> dict:
    """The example's main loop (epochs up to 40, lr / 4 on a validation plateau, best weights kept),
    stopped when ``minutes`` have passed."""
    torch.manual_seed(seed)
    train = batchify(corpus.splits["train"], 20)
    valid, test = batchify(corpus.splits["valid"], 10), batchify(corpus.splits["test"], 10)
    model = ExampleModel(len(corpus.vocab))
    lr, clip, bptt, best, best_state, step = 20.0, 0.25, 35, math.inf, None, 0
    records, window_losses = [], []
    started = time.monotonic()
    out_of_time = False
    for epoch in range(1, 41):
        model.train()
        hidden = None
        for begin in range(0, train.size(0) - 1, bptt):
            length = min(bptt, train.size(0) - 1 - begin)
            data, targets = train[begin : begin + length], train[begin + 1 : begin + 1 + length]
            hidden = None if hidden is None else tuple(h.detach() for h in hidden)
            model.zero_grad()
            output, hidden = model(data, hidden)
            loss = F.nll_loss(output.view(-1, output.size(-1)), targets.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            window_losses.append(loss.item())  # the example reads the loss every step
            step += 1
            if step % 100 == 0:
                records.append({"event": "train", "epoch": epoch, "step": step,
                                "loss": sum(window_losses) / len(window_losses), "lr": lr})
                window_losses.clear()
            if time.monotonic() - started >= 60 * minutes:
                out_of_time = True
                break
        val_loss = example_evaluate(model, valid)
        records.append({"event": "eval", "split": "valid", "epoch": epoch, "step": step, "loss": val_loss,
                        "ppl": math.exp(val_loss), "lr": lr, "minutes": (time.monotonic() - started) / 60})
        print(f"  example epoch {epoch}: valid ppl {math.exp(val_loss):.2f} (lr {lr:g}, "
              f"{records[-1]['minutes']:.1f} min)", flush=True)
        if val_loss < best:
            best, best_state = val_loss, copy.deepcopy(model.state_dict())
        else:
            lr /= 4.0
        if out_of_time:
            break
    model.load_state_dict(best_state)
    test_loss = example_evaluate(model, test)
    records.append({"event": "eval", "split": "test", "epoch": epoch, "step": step, "loss": test_loss,
                    "ppl": math.exp(test_loss)})
    (out / "example").mkdir(exist_ok=True)
    with open(out / "example" / "metrics.jsonl", "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, allow_nan=False) + "\n")
    return {"epochs": epoch, "steps": step, "best_valid_ppl": math.exp(best), "test_ppl": math.exp(test_loss)}


def train_rnnlab(minutes: float, out: Path, seed: int) -> dict:
    config = load_config("ptb-cpu30", overrides=[f"train.max_minutes={minutes}", f"train.seed={seed}"])
    run_dir = out / "rnnlab"
    Trainer(config, run_dir).fit()
    records = read_metrics(run_dir / "metrics.jsonl")
    for record in records:
        if record.get("split") == "valid":
            print(f"  rnnlab epoch {record['epoch']}: valid ppl {record['ppl']:.2f} (step {record['step']})")
    valid = [r for r in records if r.get("split") == "valid"]
    test = [r for r in records if r.get("split") == "test"][-1]
    return {"epochs": valid[-1]["epoch"], "steps": valid[-1]["step"],
            "best_valid_ppl": min(r["ppl"] for r in valid), "test_ppl": test["ppl"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=SIDES, help="run one side (the other's summary is kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--together", action="store_true",
                        help="run both sides at once, one thread each, so the machine's load hits both alike")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.together:
        command = [sys.executable, __file__, str(args.out), f"--minutes={args.minutes}", f"--seed={args.seed}",
                   "--threads=1"]
        children = [subprocess.Popen([*command, f"--only={side}"]) for side in SIDES]
        if any(child.wait() for child in children):
            raise SystemExit("a side failed; see its output above")
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.minutes:g} minutes",
              flush=True)
        for side in SIDES if args.only is None else (args.only,):
            summary = {"minutes": args.minutes, "threads": torch.get_num_threads(), "torch": torch.__version__}
            if side == "example":
                summary.update(train_example(load_corpus(load_config("ptb-cpu30").data), args.minutes, args.out,
                                             args.seed))
            else:
                summary.update(train_rnnlab(args.minutes, args.out, args.seed))
            (args.out / f"summary-{side}.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n",
                                                           encoding="utf-8")
        if args.only is not None:
            return
    report(args.out)


def report(out: Path) -> None:
    summary = {side: json.loads((out / f"summary-{side}.json").read_text(encoding="utf-8"))
               for side in SIDES if (out / f"summary-{side}.json").is_file()}
    if len(summary) == len(SIDES):
        plot_runs([str(out / side) for side in SIDES], str(out / "curves.png"),
                  ["word_language_model example", "rnnlab ptb-cpu30"])
    print("\n| PTB, same wall-clock budget | minutes | torch threads | epochs (steps) | best validation perplexity "
          "| test perplexity |")
    print("|---|---|---|---|---|---|")
    for side, s in summary.items():
        print(f"| {side} | {s['minutes']:g} | {s['threads']} | {s['epochs']} ({s['steps']}) | "
              f"{s['best_valid_ppl']:.2f} | {s['test_ppl']:.2f} |")
    if len(summary) == len(SIDES):
        gain = 1 - summary["rnnlab"]["best_valid_ppl"] / summary["example"]["best_valid_ppl"]
        print(f"\nrnnlab's best validation perplexity is {gain:.1%} below the example's (goal: at least 15%)")


if __name__ == "__main__":
    main()
