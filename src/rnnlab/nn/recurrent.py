"""Recurrent state: what flows from one step, and one truncated-BPTT window, to the next.

A state is what ``nn.RNN``/``nn.GRU`` (a tensor ``h``) or ``nn.LSTM`` (a tuple ``(h, c)``) take and
return, each shaped (num_layers, B, H); ``None`` means zeros. State is passed in and out, never
stored on a module. Where layers differ in size, H is the widest and each layer's state fills the
first of its columns (the rest are zeros); a dilated layer (h_t from h_(t-d)) holds d rows instead of
one: ``split_state`` and ``join_states`` convert between the one tensor and the layers' states.
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


def map_states(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], first: State, second: State) -> State:
    """Apply ``fn`` to matching tensors of two states of one shape: (h, h'), or (h, h') and (c, c') for LSTM."""
    if isinstance(first, tuple):
        return tuple(fn(a, b) for a, b in zip(first, second))  # type: ignore[return-value]
    return fn(first, second)


def detach_state(state: State | None) -> State | None:
    """Cut the autograd graph between truncated-BPTT windows, keeping the values."""
    return map_state(torch.Tensor.detach, state)


def split_state(state: State | None, layer_sizes: Sequence[int], rows: Sequence[int] | None = None) -> list[Any]:
    """(R, B, max size) [or a pair of them] -> one state per layer, (rows_k, B, H_k) [pairs], or Nones.

    A layer holds one row (its h_(t-1)) unless it is dilated: a layer that links h_t to h_(t-d) holds
    the d rows of the window's last d steps, oldest first. R is the sum of the rows."""
    rows = tuple(rows) if rows is not None else (1,) * len(layer_sizes)
    layers, width, height = len(layer_sizes), max(layer_sizes), sum(rows)
    if state is None:
        return [None] * layers
    for part in state if isinstance(state, tuple) else (state,):
        if part.dim() != 3 or part.size(0) != height or part.size(2) != width:
            raise ValueError(f"a state for {layers} layers of {width} units is shaped ({height}, B, {width}), "
                             f"got {tuple(part.shape)}")
    starts = [sum(rows[:k]) for k in range(layers)]

    def layer(part: torch.Tensor, k: int) -> torch.Tensor:
        block = part[starts[k] : starts[k] + rows[k]]
        # a narrower layer's columns are a strided view; cuDNN takes contiguous states only
        return block if layer_sizes[k] == width else block[:, :, : layer_sizes[k]].contiguous()

    if isinstance(state, tuple):
        h, c = state
        return [(layer(h, k), layer(c, k)) for k in range(layers)]
    return [layer(state, k) for k in range(layers)]


def join_states(states: list[Any], width: int | None = None) -> State:
    """Per-layer states (rows_k, B, H_k) [pairs] -> (R, B, width) [a pair], narrower layers padded with zeros."""
    def join(parts: list[torch.Tensor]) -> torch.Tensor:
        size = width or parts[0].size(-1)
        return torch.cat([p if p.size(-1) == size else nn.functional.pad(p, (0, size - p.size(-1))) for p in parts])

    if isinstance(states[0], tuple):
        return join([h for h, _ in states]), join([c for _, c in states])
    return join(states)
