"""Recurrent state: what flows from one step, and one truncated-BPTT window, to the next.

A state is what ``nn.RNN``/``nn.GRU`` (a tensor ``h``) or ``nn.LSTM`` (a tuple ``(h, c)``) take and
return, each shaped (num_layers, B, H); ``None`` means zeros. State is passed in and out, never
stored on a module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: State | None) -> State | None:
    """Apply ``fn`` to the tensor(s) of a state: h, or (h, c) for LSTM."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)  # type: ignore[return-value]
    return fn(state)


def detach_state(state: State | None) -> State | None:
    """Cut the autograd graph between truncated-BPTT windows, keeping the values."""
    return map_state(torch.Tensor.detach, state)
