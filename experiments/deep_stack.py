"""Do skip connections let a deep LSTM stack train? (The source document's third remedy across depth.)

The ptb-deep-residual preset (6 LSTM layers of 200 units, tied, locked dropout 0.2, Adam lr 0.002,
clip 1) with skip = none, residual and dense, the same seed, data and number of steps. For each: the
gradient of the summed loss reaching every layer at initialisation (``rnnlab diagnose``'s
depth_norm, on a probe of validation text), and the validation perplexity during training.

    python experiments/deep_stack.py runs/deep                  # 1,500 steps each (about 1.1 epochs)
    python experiments/deep_stack.py OUT --steps 6000 --layers 8

Prints a markdown table and writes OUT/curves.png (`rnnlab plot`'s panels) and OUT/<skip>/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rnnlab.config import load_config
from rnnlab.data import load_corpus
from rnnlab.diagnostics import gradient_flow, run_probe
from rnnlab.models import RNNLanguageModel
from rnnlab.plots import plot_runs
from rnnlab.training.checkpoint import load_checkpoint
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer

SKIPS = ("none", "residual", "dense")


def depth_at_init(config) -> list[float]:
    """depth_norm of every layer for the model as seeded and initialised, on 8 streams of 35 validation tokens."""
    corpus = load_corpus(config.data)
    torch.manual_seed(config.train.seed)
    model = RNNLanguageModel.from_config(config.model, len(corpus.vocab), config.regularization)
    ids = corpus.splits["valid"][: 8 * 36].view(8, 36).t()  # (36, 8)
    flow = gradient_flow(run_probe(model, ids[:-1], ids[1:]))
    return [entry["depth_norm"] for entry in flow]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    common = [f"model.num_layers={args.layers}", f"train.max_steps={args.steps}",
              f"train.eval_every_steps={args.eval_every}", f"train.seed={args.seed}"]
    print(f"preset ptb-deep-residual, overrides: {' '.join(common)}", flush=True)
    rows = []
    for skip in SKIPS:
        config = load_config("ptb-deep-residual", overrides=[*common, f"model.skip={skip}"])
        run_dir = args.out / skip
        depth = depth_at_init(config)
        if not (run_dir / "latest.pt").is_file():
            Trainer(config, run_dir).fit()
        elif load_checkpoint(run_dir / "latest.pt")["progress"]["step"] < args.steps:  # a longer budget continues
            Trainer(config, run_dir, resume=True).fit()
        valid = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("split") == "valid"]
        best = min(valid, key=lambda r: r["loss"])
        rows.append({"skip": skip, "depth_norm_at_init": depth, "valid_ppl": [(r["step"], r["ppl"]) for r in valid],
                     "best_valid_ppl": best["ppl"]})
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    plot_runs([str(args.out / s) for s in SKIPS], str(args.out / "curves.png"), [f"skip: {s}" for s in SKIPS])
    print(f"\n| {args.layers}-layer LSTM, skip | gradient at the bottom layer / top layer, at init "
          f"| validation perplexity at steps {', '.join(str(s) for s, _ in rows[0]['valid_ppl'])} | best |")
    print("|---|---|---|---|")
    for row in rows:
        ratio = row["depth_norm_at_init"][0] / row["depth_norm_at_init"][-1]
        curve = ", ".join(f"{p:.1f}" for _, p in row["valid_ppl"])
        print(f"| {row['skip']} | {ratio:.3g} | {curve} | {row['best_valid_ppl']:.2f} |")


if __name__ == "__main__":
    main()
