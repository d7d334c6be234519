"""Which dropout regularises a recurrent language model? Penn Treebank, five ways, one budget.

A 2x300 LSTM (bptt 35, batch 20, SGD lr 1 held constant, clip 5) that overfits without dropout: it
trains on the first ``--fraction`` of PTB's training text (so that overfitting shows within a CPU
budget) and is validated on the whole validation set. Five variants, the same seed and the same
number of steps:

- none;
- zaremba: standard dropout 0.5 on the non-recurrent connections (Zaremba et al. 2014);
- naive: zaremba + recurrent dropout 0.3 with a fresh mask every step (the source document's counterexample);
- variational: locked dropout 0.5 + variational recurrent dropout 0.3 (Gal & Ghahramani 2016);
- weight_drop: locked dropout 0.5 + DropConnect 0.5 on W_hh (Merity et al. 2017).

    python experiments/ptb_dropout.py runs/ptb-dropout                 # 1,200 steps each
    python experiments/ptb_dropout.py OUT --steps 2400        # continues the runs of a shorter budget

Prints a markdown table (best and last validation perplexity) and writes OUT/curves.png with
`rnnlab plot`'s panels; the runs are in OUT/<variant>.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnlab.config import load_config
from rnnlab.data.corpus import resolve_data_path
from rnnlab.plots import plot_runs
from rnnlab.training.checkpoint import load_checkpoint
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer

# Zaremba's rates on the non-recurrent connections; standard masks unless a variant sets dropout_kind.
NON_RECURRENT = ["regularization.input_dropout=0.5", "regularization.hidden_dropout=0.5",
                 "regularization.output_dropout=0.5"]
VARIANTS = {
    "none": [],
    "zaremba": NON_RECURRENT,
    "naive": [*NON_RECURRENT, "regularization.recurrent_dropout=0.3", "regularization.recurrent_dropout_kind=naive"],
    "variational": [*NON_RECURRENT, "regularization.dropout_kind=variational", "regularization.recurrent_dropout=0.3"],
    "weight_drop": [*NON_RECURRENT, "regularization.dropout_kind=variational", "regularization.weight_drop=0.5"],
}
MODEL = ["model.hidden_size=300", "model.embedding_dim=300", "model.init_range=0.05", "train.bptt=35",
         "train.schedule=none", "train.epochs=1000", "train.log_every=50"]


def subset_corpus(out: Path, fraction: float) -> Path:
    """OUT/ptb-subset: the first ``fraction`` of PTB's training lines, the whole valid and test files."""
    source, target = resolve_data_path("builtin:ptb"), out / "ptb-subset"
    target.mkdir(parents=True, exist_ok=True)
    lines = (source / "train.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (target / "train.txt").write_text("".join(lines[: int(len(lines) * fraction)]), encoding="utf-8")
    for split in ("valid", "test"):
        (target / f"{split}.txt").write_text((source / f"{split}.txt").read_text(encoding="utf-8"), encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--eval-every", type=int, default=0, help="validate every N steps too (default: per epoch)")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of PTB's training text used")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    data = subset_corpus(args.out, args.fraction)
    common = [f"data.path={data}", *MODEL, f"train.max_steps={args.steps}",
              f"train.eval_every_steps={args.eval_every}", f"train.seed={args.seed}"]
    print(f"preset ptb-small, overrides: {' '.join(common[1:])}; data: first {args.fraction:.0%} of PTB train")
    rows = []
    for name in args.variants:
        run_dir = args.out / name
        config = load_config("ptb-small", overrides=[*common, *VARIANTS[name]])
        if not (run_dir / "latest.pt").is_file():
            Trainer(config, run_dir).fit()
        elif load_checkpoint(run_dir / "latest.pt")["progress"]["step"] < args.steps:
            Trainer(config, run_dir, resume=True).fit()  # a longer budget continues the earlier run
        valid = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("split") == "valid"]
        best = min(valid, key=lambda r: r["loss"])
        rows.append((name, best["ppl"], best["step"], valid[-1]["ppl"], valid[-1]["step"]))
        print(f"{name}: best valid {best['ppl']:.2f} at step {best['step']}, last {valid[-1]['ppl']:.2f}", flush=True)
    plot_runs([str(args.out / name) for name in args.variants], str(args.out / "curves.png"), args.variants)
    print("\n| dropout | best validation perplexity (step) | last validation perplexity (step) |")
    print("|---|---|---|")
    for name, best, best_step, last, last_step in rows:
        print(f"| {name} | {best:.2f} ({best_step}) | {last:.2f} ({last_step}) |")


if __name__ == "__main__":
    main()
