"""Compare runs by their metrics.jsonl: training loss, gradient norm and validation curves."""

from __future__ import annotations

from pathlib import Path

from rnnlab.diagnostics.report import pyplot, save_figure
from rnnlab.errors import DataError
from rnnlab.training.metrics import read_metrics

PANELS = (
    ("train", "loss", "training loss"),
    ("train", "grad_norm", "gradient norm (before clipping)"),
    ("eval", "loss", "validation loss"),
)


def plot_runs(run_dirs: list[str | Path], out: str | Path, labels: list[str] | None = None) -> Path:
    """One figure, three panels (train loss, gradient norm, validation loss), one line per run."""
    plt = pyplot()
    runs = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.jsonl"
        if not path.is_file():
            raise DataError(f"{run_dir} has no metrics.jsonl (is it an rnnlab run directory?)")
        runs.append(read_metrics(path))
    labels = labels or [Path(r).name for r in run_dirs]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4))
    for ax, (event, key, title) in zip(axes, PANELS):
        for index, (records, label) in enumerate(zip(runs, labels)):
            points = [(r["step"], r[key]) for r in records
                      if r["event"] == event and key in r and (event != "eval" or r.get("split") == "valid")]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, "o-" if event == "eval" else "-", ms=3, label=label, color=f"C{index}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out)
    return out
