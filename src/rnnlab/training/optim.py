"""Optimizers and learning-rate schedules, built from ``TrainConfig``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from rnnlab.config import TrainConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """Fused optimizers: one kernel for the whole update, and a skip decided on the device (``found_inf``), so a
    training step never waits for the GPU. Fused SGD equals the foreach one bit for bit; Adam to rounding."""
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay, fused=True)
        _zero_momentum_buffers(optimizer)
        return optimizer
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict`` keeping how this version steps (fused): a checkpoint holds the training
    state, and one written before the optimizers were fused would otherwise switch the fused step off. The flags
    go into the saved groups before loading, because torch places Adam's step count by the saved ``fused``."""
    flags = [{key: group[key] for key in IMPLEMENTATION_FLAGS if key in group} for group in optimizer.param_groups]
    state = {**state, "param_groups": [{**saved, **kept} for saved, kept in zip(state["param_groups"], flags)]}
    optimizer.load_state_dict(state)
    if isinstance(optimizer, torch.optim.SGD):
        _zero_momentum_buffers(optimizer)  # a checkpoint lacks those of parameters that had no gradient yet


def _zero_momentum_buffers(optimizer: torch.optim.SGD) -> None:
    """Momentum buffers that start at zero instead of at the first gradient: the same update (no dampening:
    0.9 * 0 + g = g), but fused SGD creates missing buffers uninitialised, only when all are missing, and never on a
    skipped step; a parameter whose first gradient comes late (an adaptive-softmax tail cluster) needs one too."""
    for group in optimizer.param_groups:
        if group["momentum"]:
            for p in group["params"]:
                if optimizer.state[p].get("momentum_buffer") is None:
                    optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` honours ``found_inf`` (torch's fused optimizers, as GradScaler uses them)."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False)) and all(
        group.get("fused") for group in optimizer.param_groups)


class LrSchedule:
    """Per-epoch learning-rate schedule; ``epoch_end(valid_loss)`` is called once per epoch.

    - ``zaremba``: lr for epoch e (1-based) is lr0 * lr_decay ** max(e - full_lr_epochs, 0)
      (Zaremba et al. 2014 and the TensorFlow PTB tutorial).
    - ``plateau``: lr / plateau_factor whenever validation loss fails to beat its best (the PyTorch
      word_language_model example: lr / 4).
    - ``none``: constant.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
        self.kind = config.schedule
        self._scheduler: Any = None
        if self.kind == "zaremba":
            full, decay = config.full_lr_epochs, config.lr_decay
            # After k calls to step() (k finished epochs) the factor is for epoch k + 1.
            self._scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda finished: decay ** max(finished + 1 - full, 0))
        elif self.kind == "plateau":
            self._scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=1.0 / config.plateau_factor, patience=0, threshold=0.0)
        self.optimizer = optimizer

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def epoch_end(self, valid_loss: float) -> None:
        if self.kind == "zaremba":
            self._scheduler.step()
        elif self.kind == "plateau":
            self._scheduler.step(valid_loss)

    def state_dict(self) -> dict[str, Any]:
        return {} if self._scheduler is None else self._scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._scheduler is not None:
            self._scheduler.load_state_dict(state)


@contextmanager
def scaled_lr(optimizer: torch.optim.Optimizer, scale: float) -> Iterator[None]:
    """Every group's lr times ``scale`` inside the block, restored after it (variable-length BPTT:
    a window of length L takes a step of lr * L / bptt, Merity et al. 2017)."""
    if scale == 1.0:
        yield
        return
    saved = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * scale
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, saved):
            group["lr"] = lr
