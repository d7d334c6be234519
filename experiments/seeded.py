"""Shared by the task experiments: train variants of a preset over several seeds and tabulate the test metric."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from rnnlab.config import load_config
from rnnlab.plots import plot_runs
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer


def run_variants(out: Path, preset: str, variants: dict[str, list[str]], seeds: list[int], title: str) -> None:
    """Train every variant (its ``--set`` overrides) for every seed into OUT/<variant>-seed<N> (a run that
    finished is kept), plot each seed's runs to OUT/seed<N>.png, and print a markdown table of the test
    metric per seed and its median next to the task's "not learned" baseline."""
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in seeds:
        runs = []
        for name, overrides in variants.items():
            run_dir = out / f"{name.split()[0]}-seed{seed}"
            if not (run_dir / "best.pt").is_file():
                Trainer(load_config(preset, overrides=[*overrides, f"train.seed={seed}"]), run_dir).fit()
            test = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("split") == "test"][-1]
            results[name].append(test)
            runs.append(run_dir)
            shown = {k: v for k, v in test.items() if k not in ("event", "split")}
            print(f"seed {seed} {name:<16} {json.dumps(shown)}", flush=True)
        plot_runs([str(r) for r in runs], str(out / f"seed{seed}.png"), list(variants))

    first = next(iter(results.values()))[0]
    metric = next(k[len("baseline_"):] for k in first if k.startswith("baseline_"))
    print(f"\n| {title} | test {metric} per seed ({', '.join(map(str, seeds))}) | median | not learned |")
    print("|---|---|---|---|")
    for name, tests in results.items():
        values = [t[metric] for t in tests]
        print(f"| {name} | {', '.join(f'{v:.4f}' for v in values)} | {statistics.median(values):.4f} | "
              f"{first[f'baseline_{metric}']:.4f} |")
