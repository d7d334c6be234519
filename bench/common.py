"""Shared by the benchmarks: timing the rnnlab trainer step by step, and timing alternatives against
each other call by call (so that a noisy machine's drift hits every side alike); the device of a check."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

from rnnlab.benchmark import rnnlab_run
from rnnlab.config import Config, TrainConfig
from rnnlab.data.corpus import Corpus
from rnnlab.models import RNNLanguageModel
from rnnlab.training.loop import train_step
from rnnlab.training.optim import make_optimizer
from rnnlab.training.trainer import Trainer


def trainer_tokens_per_s(config: Config, corpus: Corpus, steps: int) -> tuple[float, Trainer]:
    """Train ``steps + 1`` steps in a scratch run directory; step 1 is warm-up and not timed (`rnnlab bench`'s)."""
    seconds, trainer = rnnlab_run(config, corpus, steps)
    return steps * config.train.bptt * config.train.batch_size / seconds, trainer


def training_steps(model: RNNLanguageModel, columns: torch.Tensor, train: TrainConfig) -> Callable[[], None]:
    """One rnnlab train_step per call, on consecutive windows of ``columns``, the state carried."""
    optimizer = make_optimizer(model.parameters(), train)
    windows = (columns.size(0) - 1) // train.bptt
    status = {"state": None, "index": 0}

    def step() -> None:
        begin = (status["index"] % windows) * train.bptt
        status["index"] += 1
        inputs, targets = columns[begin : begin + train.bptt], columns[begin + 1 : begin + 1 + train.bptt]
        result = train_step(model, optimizer, inputs, targets, status["state"], clip_norm=train.clip_norm,
                            loss_average=train.loss_average)
        status["state"] = result.state

    return step


def recurrent_passes(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """Forward and backward of the recurrent part alone per call."""
    def run() -> None:
        output, _ = module(x)  # (T, B, E) -> (T, B, H)
        output.sum().backward()
    return run


def time_alternating(runs: dict[str, Callable[[], None]], steps: int,
                     device: torch.device | None = None) -> dict[str, float]:
    """Seconds spent in each run over ``steps`` calls each, the runs interleaved call by call; one
    untimed warm-up call each first. On CUDA each call is timed to the end of its kernels."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    for run in runs.values():
        run()
    sync()
    spent = dict.fromkeys(runs, 0.0)
    for _ in range(steps):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            sync()
            spent[name] += time.perf_counter() - started
    return spent


def compare_variants(shape: str, variants: dict[str, list[str]], steps: int, rounds: int,
                     device: torch.device, base_overrides: list[str] = ()) -> None:
    """Train every variant of preset ``shape`` (its ``--set`` overrides on top of ``base_overrides``) on
    the same PTB windows, in alternating steps, and print ms/step and the throughput ratio to the first.

    Variants whose parameters match the first's in name and shape start from the same weights."""
    from rnnlab.config import load_config
    from rnnlab.data import batchify, load_corpus

    runs, first = {}, None
    for name, overrides in variants.items():
        config = load_config(shape, overrides=[*base_overrides, *overrides])
        if first is None:
            corpus = load_corpus(config.data)
            columns = batchify(corpus.splits["train"], config.train.batch_size).to(device)
        torch.manual_seed(config.train.seed)
        model = RNNLanguageModel.from_config(config.model, len(corpus.vocab), config.regularization,
                                             output_settings=config.output, counts=corpus.vocab.counts,
                                             device_type=device.type)
        if first is None:
            first = (name, config, model.state_dict())
        else:
            mine = model.state_dict()
            if mine.keys() == first[2].keys() and all(mine[k].shape == first[2][k].shape for k in mine):
                model.load_state_dict(first[2])
        runs[name] = training_steps(model.to(device), columns, config.train)
    reference, config, _ = first
    m, t = config.model, config.train
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; {shape} shape: {m.num_layers}x{m.hidden_size}, bptt {t.bptt}, "
          f"batch {t.batch_size}; {steps} steps x {rounds} rounds")
    timed = [time_alternating(runs, steps, device) for _ in range(rounds)]
    total = {name: sum(r[name] for r in timed) for name in runs}
    for name in runs:
        per_round = [round(r[reference] / r[name], 3) for r in timed]
        print(f"{name:<24} {1000 * total[name] / (steps * rounds):8.1f} ms/step  "
              f"ratio to {reference} {total[reference] / total[name]:.3f}  (per round {per_round})")


def check_device(description: str, name: str) -> torch.device | None:
    """--device of a correctness check (default cuda), with TF32 off so float32 tolerances hold; None, after
    saying so, when CUDA is asked for and absent."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cuda")
    device = torch.device(parser.parse_args().device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"{name}: no CUDA device here")
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return device
