"""Does this CPU do bfloat16? The evidence behind issue 13's status on a given machine.

    python bench/bf16_probe.py

Prints the CPU's bfloat16 flags (avx512_bf16, amx_bf16 in /proc/cpuinfo), PyTorch's CPU capability, the time of
one language-model output product (700 x 200 by 200 x 10,000) in float32 and in bfloat16, and whether a 2-layer
nn.LSTM runs under torch.autocast("cpu", dtype=torch.bfloat16) at all.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def timed(run, repeats: int = 5) -> float:
    run()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return 1000 * (time.perf_counter() - started) / repeats


def main() -> None:
    flags = cpu_flags()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, bfloat16 flags: "
          f"{sorted(f for f in flags if 'bf16' in f) or 'none'}")
    a, b = torch.randn(700, 200), torch.randn(200, 10_000)
    fp32 = timed(lambda: a @ b)
    a16, b16 = a.bfloat16(), b.bfloat16()
    bf16 = timed(lambda: a16 @ b16, repeats=2)
    print(f"output product 700x200 @ 200x10000: float32 {fp32:.1f} ms, bfloat16 {bf16:.1f} ms "
          f"({bf16 / fp32:.1f}x the float32 time)")
    lstm, x = torch.nn.LSTM(200, 200, 2), torch.randn(35, 20, 200)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(x)[0].float().sum().backward()
        print("nn.LSTM under bfloat16 autocast: runs")
    except RuntimeError as exc:
        print(f"nn.LSTM under bfloat16 autocast: fails: {str(exc).splitlines()[0][:120]}")


if __name__ == "__main__":
    main()
