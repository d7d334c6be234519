"""`rnnlab diagnose` on untrained ptb-medium and ptb-large, default settings, as a user runs it.

    python bench/diagnose_speed.py                       # goals: ptb-medium <= 20 s, ptb-large <= 60 s (2 cores)
    python bench/diagnose_speed.py --presets ptb-large

Each preset runs as its own `python -m rnnlab diagnose --preset P --out TMP --quiet` process (start-up, model
build, probe, every measurement and the report included); the wall time is measured around the process and
the peak memory is the one the command prints (its resident set).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["ptb-medium", "ptb-large"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads")
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "rnnlab", "diagnose", "--preset", preset, "--out", out,
                                   "--quiet", "--device", "cpu"], capture_output=True, text=True, check=True)
            wall = time.perf_counter() - started
        peak = re.search(r"peak memory ([\d.]+) GB", done.stdout)
        inner = re.search(r"diagnosed in ([\d.]+) s", done.stdout)
        print(f"{preset:<12} {wall:6.1f} s wall (diagnosis and report {inner.group(1)} s), "
              f"peak memory {peak.group(1)} GB", flush=True)
        for line in done.stdout.splitlines():
            if line.startswith("layer "):
                print(f"  {line[:160]}")


if __name__ == "__main__":
    main()
