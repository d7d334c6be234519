"""Switching a module to eval mode for a while, and back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (dropout off) inside the block; the module's earlier mode comes back after it, also on
    an error, so evaluating or measuring in the middle of training leaves training as it was."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
