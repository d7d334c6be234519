"""Recurrent stacks on PyTorch's fused layers (cuDNN on GPU, one ATen kernel per layer on CPU).

A state is what ``nn.RNN``/``nn.GRU`` (a tensor ``h``) or ``nn.LSTM`` (a tuple ``(h, c)``) take and
return, each shaped (num_layers, B, H); ``None`` means zeros. State is passed in and out, never
stored on a module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int,
                   dropout: float = 0.0) -> nn.RNNBase:
    """A fused stack; ``dropout`` applies between layers (PyTorch's semantics), so it is 0 for one layer."""
    between = dropout if num_layers > 1 else 0.0
    if cell == "lstm":
        return nn.LSTM(input_size, hidden_size, num_layers, dropout=between)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size, num_layers, dropout=between)
    if cell in ("rnn_tanh", "rnn_relu"):
        return nn.RNN(input_size, hidden_size, num_layers, nonlinearity=cell[len("rnn_"):], dropout=between)
    raise ValueError(f"unknown cell {cell!r} (cells: rnn_tanh, rnn_relu, lstm, gru)")


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
