"""Recurrent state: what flows from one step, and one truncated-BPTT window, to the next.

A state is what ``nn.RNN``/``nn.GRU`` (a tensor ``h``) or ``nn.LSTM`` (a tuple ``(h, c)``) take and
return, each shaped (num_layers, B, H); ``None`` means zeros. State is passed in and out, never
stored on a module. Where layers differ in size, H is the widest and each layer's state fills the
first of its columns (the rest are zeros): ``split_state`` and ``join_states`` convert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

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


def split_state(state: State | None, layer_sizes: Sequence[int]) -> list[Any]:
    """(L, B, max size) [or a pair of them] -> L per-layer states (1, B, H_k) [pairs], or L Nones."""
    layers, width = len(layer_sizes), max(layer_sizes)
    if state is None:
        return [None] * layers
    for part in state if isinstance(state, tuple) else (state,):
        if part.dim() != 3 or part.size(0) != layers or part.size(2) != width:
            raise ValueError(f"a state for {layers} layers of {width} units is shaped ({layers}, B, {width}), "
                             f"got {tuple(part.shape)}")

    def layer(part: torch.Tensor, k: int) -> torch.Tensor:
        return part[k : k + 1] if layer_sizes[k] == width else part[k : k + 1, :, : layer_sizes[k]]

    if isinstance(state, tuple):
        h, c = state
        return [(layer(h, k), layer(c, k)) for k in range(layers)]
    return [layer(state, k) for k in range(layers)]


def join_states(states: list[Any], width: int | None = None) -> State:
    """L per-layer states (1, B, H_k) [pairs] -> (L, B, width) [a pair], narrower layers padded with zeros."""
    def join(parts: list[torch.Tensor]) -> torch.Tensor:
        size = width or parts[0].size(-1)
        return torch.cat([p if p.size(-1) == size else nn.functional.pad(p, (0, size - p.size(-1))) for p in parts])

    if isinstance(states[0], tuple):
        return join([h for h, _ in states]), join([c for _, c in states])
    return join(states)
