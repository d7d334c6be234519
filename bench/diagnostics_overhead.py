"""Training slowdown from in-training diagnostics (diagnostics.every_steps = N), ptb-small or another preset.

Runs the same trainer with diagnostics off and on, alternating, in one process, on the same data,
and prints tokens/s of each and the slowdown; also the cost of one diagnostics probe against the
cost of the N steps it is amortised over.

    python bench/diagnostics_overhead.py                   # N = 500, 1000 timed steps, 2 rounds
    python bench/diagnostics_overhead.py --every 500 --steps 1500 --rounds 3
    python bench/diagnostics_overhead.py --preset ptb-medium --direct   # one probe against 500 steps only
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import trainer_tokens_per_s
from rnnlab.config import load_config
from rnnlab.data import load_corpus
from rnnlab.diagnostics import summary_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--preset", default="ptb-small")
    parser.add_argument("--direct", action="store_true",
                        help="skip the end-to-end runs: time the steps and one probe only")
    args = parser.parse_args()

    full = load_corpus(load_config().data)
    corpus = full.with_short_eval(20_000, test_tokens=500)
    base = load_config(args.preset, overrides=["train.device=cpu"])
    measured = base.with_overrides({"diagnostics.every_steps": args.every})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu, {args.preset}, {args.steps} timed "
          f"steps, {args.rounds} rounds (median)")
    off, on = [], []
    trainer = None
    if args.direct:
        speed, trainer = trainer_tokens_per_s(measured.with_overrides({"diagnostics.every_steps": 0}), corpus,
                                              args.steps)
        off.append(speed)
    for _ in range(0 if args.direct else args.rounds):
        off.append(trainer_tokens_per_s(base, corpus, args.steps)[0])
        speed, trainer = trainer_tokens_per_s(measured, corpus, args.steps)
        on.append(speed)
    if on:
        slowdown = 1 - statistics.median(on) / statistics.median(off)
        print(f"diagnostics off {statistics.median(off):8.0f} tokens/s  every {args.every} steps "
              f"{statistics.median(on):8.0f} tokens/s  slowdown {100 * slowdown:.2f}%  "
              f"(rounds off {[round(x) for x in off]}, on {[round(x) for x in on]})")

    # The same question asked directly: one probe against the N steps it is spread over.
    inputs, targets = trainer.workload.probe_batch(measured.diagnostics.batch, measured.diagnostics.length)
    calls = []
    for _ in range(5):
        started = time.perf_counter()
        summary_records(trainer.model, inputs, targets)
        calls.append(time.perf_counter() - started)
    step_s = measured.train.bptt * measured.train.batch_size / statistics.median(off)
    print(f"one probe {1000 * statistics.median(calls):.1f} ms; {args.every} steps {args.every * step_s:.1f} s; "
          f"amortised cost {100 * statistics.median(calls) / (args.every * step_s):.2f}%")


if __name__ == "__main__":
    main()
