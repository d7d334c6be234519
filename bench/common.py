"""Shared by the benchmarks: timing the rnnlab trainer step by step."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rnnlab.config import Config
from rnnlab.data.corpus import Corpus
from rnnlab.training.trainer import Observer, Trainer


class StepClock(Observer):
    """Records the time at the end of every training step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step(self, step: int, tokens: int) -> None:
        self.times.append(time.perf_counter())


def trainer_tokens_per_s(config: Config, corpus: Corpus, steps: int) -> tuple[float, Trainer]:
    """Train ``steps + 1`` steps in a scratch run directory; step 1 is warm-up and not timed."""
    clock = StepClock()
    config = config.with_overrides({"train.max_steps": steps + 1})
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir) / "run", corpus=corpus, observers=(clock,))
        trainer.fit()
    return steps * config.train.bptt * config.train.batch_size / (clock.times[-1] - clock.times[0]), trainer
