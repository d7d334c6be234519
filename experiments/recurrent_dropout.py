"""Does a fresh dropout mask at every step hurt memory, and one mask for all steps not? (The source
document's fourth remedy, Gal & Ghahramani 2016.)

A long-range task that an LSTM without dropout learns, trained with recurrent dropout p on h_{t-1}:
none, naive (a fresh mask every step) and variational (one mask for the window), the same steps and
seeds for each, several seeds. Prints a markdown table of the test metric (next to the task's "not
learned" baseline) and writes the runs and one plot per seed to OUT.

    python experiments/recurrent_dropout.py runs/recurrent-dropout   # adding, T = 50, 128 units, 5,000 steps, p 0.25
    python experiments/recurrent_dropout.py OUT --task copy --length 20 --p 0.5 --seeds 1 2 3

Every run is `rnnlab train --preset {task}-lstm` with the overrides printed above the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rnnlab.config import load_config
from rnnlab.plots import plot_runs
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer

VARIANTS = {
    "none": [],
    "naive": ["regularization.recurrent_dropout={p}", "regularization.recurrent_dropout_kind=naive"],
    "variational": ["regularization.recurrent_dropout={p}", "regularization.recurrent_dropout_kind=variational"],
}
PRESETS = {"adding": "adding-lstm", "copy": "copy-lstm", "temporal_order": "temporal-order-lstm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", default="adding", choices=list(PRESETS))
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=25, help="epochs of the preset's steps_per_epoch batches")
    parser.add_argument("--p", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()

    common = [f"task.length={args.length}", f"model.hidden_size={args.hidden}", f"train.epochs={args.epochs}"]
    print(f"preset {PRESETS[args.task]}, overrides: {' '.join(common)}; recurrent dropout p = {args.p}")
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for seed in args.seeds:
        runs = []
        for name, extra in VARIANTS.items():
            overrides = [*common, f"train.seed={seed}", *(e.format(p=args.p) for e in extra)]
            run_dir = args.out / f"{name}-seed{seed}"
            if not (run_dir / "best.pt").is_file():
                Trainer(load_config(PRESETS[args.task], overrides=overrides), run_dir).fit()
            test = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("split") == "test"][-1]
            results[name].append(test)
            runs.append(run_dir)
            shown = {k: v for k, v in test.items() if k not in ("event", "split")}
            print(f"seed {seed} {name:<12} {json.dumps(shown)}", flush=True)
        plot_runs([str(r) for r in runs], str(args.out / f"seed{seed}.png"), list(VARIANTS))

    metric = next(k[len("baseline_"):] for k in results["none"][0] if k.startswith("baseline_"))
    baseline = results["none"][0][f"baseline_{metric}"]
    print(f"\n| recurrent dropout (p = {args.p}) | test {metric} per seed ({', '.join(map(str, args.seeds))}) "
          f"| median | not learned |")
    print("|---|---|---|---|")
    for name, tests in results.items():
        values = [t[metric] for t in tests]
        print(f"| {name} | {', '.join(f'{v:.4f}' for v in values)} | {statistics.median(values):.4f} | "
              f"{baseline:.4f} |")


if __name__ == "__main__":
    main()
