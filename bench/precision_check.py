"""train.precision = bf16 against fp32 on the same schedule: the same preset, seed and number of steps, both
validated exactly in float32 at the end; prints both perplexities and their ratio (goal: within 1%) and the
training tokens/s of each.

    python bench/precision_check.py --preset ptb-medium --steps 1500          # on CUDA
    python bench/precision_check.py --device cpu --steps 20 --dry-run          # fp32 twice: checks the script
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rnnlab.config import load_config
from rnnlab.data.corpus import load_corpus
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer


def run(preset: str, device: str, steps: int, precision: str, extra: list[str]) -> tuple[float, float]:
    config = load_config(preset, overrides=[f"train.device={device}", f"train.max_steps={steps}",
                                            f"train.precision={precision}", "train.checkpoint_every_minutes=0",
                                            f"train.log_every={max(1, steps // 10)}",
                                            *extra])
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, Path(folder) / "run", corpus=load_corpus(config.data))
        trainer.fit()
        records = read_metrics(Path(folder) / "run" / "metrics.jsonl")
    valid = [r for r in records if r["event"] == "eval" and r["split"] == "valid"][-1]
    speeds = [r["tokens_per_s"] for r in records if r["event"] == "train"]
    return valid["ppl"], sum(speeds) / max(len(speeds), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ptb-medium")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="fp32 on both sides (bf16 is CUDA only)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    lower = "fp32" if args.dry_run else "bf16"
    fp32 = run(args.preset, args.device, args.steps, "fp32", args.set)
    other = run(args.preset, args.device, args.steps, lower, args.set)
    print(f"{args.preset}, {args.steps} steps on {args.device}: valid ppl fp32 {fp32[0]:.2f} ({fp32[1]:.0f} tok/s), "
          f"{lower} {other[0]:.2f} ({other[1]:.0f} tok/s); ratio {other[0] / fp32[0]:.4f} (goal: within 1%)")


if __name__ == "__main__":
    main()
