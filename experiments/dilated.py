"""Does dilated recurrence carry a tanh RNN's memory where the plain one loses it? (The source
document's third remedy across time; Chang et al. 2017.)

The adding-dilated-rnn preset (4 tanh layers of 64 units, dilations 1, 2, 4, 8) against the same
stack with every dilation 1, at a length where the plain tanh RNN stays at the "not learned"
baseline; the same steps and seeds for both. Prints a markdown table of the test metric next to the
baseline, and writes the runs and one plot per seed to OUT.

    python experiments/dilated.py runs/dilated                       # adding, T = 100, 2,000 steps, seeds 1-3
    python experiments/dilated.py OUT --task copy --length 50 --epochs 20

Every run is `rnnlab train --preset adding-dilated-rnn` with the overrides printed above the table.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", default="adding", choices=("adding", "copy", "temporal_order"))
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the preset's 200 batches")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()

    dilations = load_config("adding-dilated-rnn").model.dilations
    variants = {"plain": [f"model.dilations={[1] * len(dilations)}"], f"dilated {list(dilations)}": []}
    common = [f"task.name={args.task}", f"task.length={args.length}", f"train.epochs={args.epochs}"]
    print(f"preset adding-dilated-rnn, overrides: {' '.join(common)}")
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in args.seeds:
        runs = []
        for name, extra in variants.items():
            run_dir = args.out / f"{name.split()[0]}-seed{seed}"
            if not (run_dir / "best.pt").is_file():
                Trainer(load_config("adding-dilated-rnn", overrides=[*common, f"train.seed={seed}", *extra]),
                        run_dir).fit()
            test = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("split") == "test"][-1]
            results[name].append(test)
            runs.append(run_dir)
            shown = {k: v for k, v in test.items() if k not in ("event", "split")}
            print(f"seed {seed} {name:<16} {json.dumps(shown)}", flush=True)
        plot_runs([str(r) for r in runs], str(args.out / f"seed{seed}.png"), list(variants))

    metric = next(k[len("baseline_"):] for k in results["plain"][0] if k.startswith("baseline_"))
    baseline = results["plain"][0][f"baseline_{metric}"]
    print(f"\n| {args.task}, T = {args.length} | test {metric} per seed ({', '.join(map(str, args.seeds))}) "
          f"| median | not learned |")
    print("|---|---|---|---|")
    for name, tests in results.items():
        values = [t[metric] for t in tests]
        print(f"| {name} | {', '.join(f'{v:.4f}' for v in values)} | {statistics.median(values):.4f} | "
              f"{baseline:.4f} |")


if __name__ == "__main__":
    main()
