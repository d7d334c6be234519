"""Does a cheaper output layer, or subword units, cost perplexity? ptb-small (2x200 LSTM) on Penn Treebank,
the same seed and number of steps, with each output layer; and the same model on SentencePiece units.

    python experiments/vocab_quality.py runs/vocab              # 4,646 steps (2 epochs of word-level PTB) each
    python experiments/vocab_quality.py runs/vocab --only sampled adaptive

Every perplexity is exact (full softmax, or adaptive's own normalised distribution), whatever trained the
model. The subword run reports perplexity per word next to per token, which is what compares with the word
level. Prints a markdown table; the runs are in OUT/<variant>, their curves in OUT/curves.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnlab.config import load_config
from rnnlab.plots import plot_runs
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer

VARIANTS = {
    "softmax": [],
    "sampled": ["model.output=sampled", "output.num_samples=1024", "output.sampler=log_uniform"],
    "adaptive": ["model.output=adaptive"],
    "adaptive-div2": ["model.output=adaptive", "output.div_value=2"],  # wider tail projections (100, 50 units)
    "nce": ["model.output=nce", "output.num_samples=1024"],
    "nce-k64": ["model.output=nce", "output.num_samples=64", "output.replacement=true"],  # Mnih & Teh's k, i.i.d.
    "subword": ["data.level=subword", "data.vocab_size=8000"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=4646)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    common = [f"train.max_steps={args.steps}", "train.epochs=100"]
    print(f"preset ptb-small, {args.steps} steps each")
    rows = []
    for name in args.only:
        run_dir = args.out / name
        if not (run_dir / "best.pt").is_file():
            Trainer(load_config("ptb-small", overrides=[*common, *VARIANTS[name]]), run_dir).fit()
        records = read_metrics(run_dir / "metrics.jsonl")
        valid = min((r for r in records if r["event"] == "eval" and r["split"] == "valid"), key=lambda r: r["loss"])
        test = [r for r in records if r["event"] == "eval" and r["split"] == "test"][-1]
        speed = [r["tokens_per_s"] for r in records if r["event"] == "train"]
        rows.append((name, valid, test, sorted(speed)[len(speed) // 2]))
        print(f"{name}: valid {valid['ppl']:.2f}, test {test['ppl']:.2f}", flush=True)
    plot_runs([str(args.out / name) for name in args.only], str(args.out / "curves.png"), args.only)
    print("\n| output / units | valid ppl per token | valid ppl per word | test ppl per word | median train tokens/s |")
    print("|---|---|---|---|---|")
    for name, valid, test, speed in rows:
        print(f"| {name} | {valid['ppl']:.2f} | {valid.get('word_ppl', valid['ppl']):.2f} | "
              f"{test.get('word_ppl', test['ppl']):.2f} | {speed:.0f} |")


if __name__ == "__main__":
    main()
