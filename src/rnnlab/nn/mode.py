"""Switching a module to eval mode for a while, and back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def in_mode(module: nn.Module, training: bool) -> Iterator[nn.Module]:
    """``module.train(training)`` inside the block; the module's earlier mode comes back after it, also on
    an error, so evaluating or measuring in the middle of training leaves training as it was."""
    was_training = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(was_training)


def evaluating(module: nn.Module):
    """Eval mode (dropout off) inside the block, the earlier mode after it."""
    return in_mode(module, False)
