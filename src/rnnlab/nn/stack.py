"""The recurrent stack: single-layer fused layers, and the one place where layers meet.

::

    input (T, B, I) -> layer 0 -> between -> layer 1 -> between -> ... -> layer L-1 -> output (T, B, H)
                          |                    |                              |
                    state[0] in/out      state[1] in/out               state[L-1] in/out

Each layer is a ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` with ``num_layers=1``: cuDNN on a GPU, one ATen
kernel on the CPU, so training runs at the speed of PyTorch's own multi-layer module. ``forward`` is
the only code that hands one layer's output to the next: between-layer dropout lives there today,
and that is where residual and dense links, dilation and per-forward transformations of a layer's
weights (``torch.func.functional_call``) go.

The state is torch.nn's: h shaped (L, B, H), or (h, c) for LSTM; ``None`` means zeros.

Weights are read through ``layer_weights(k)`` (init, the reference cells, diagnostics), never by
attribute names. They live at ``layers.{k}.weight_ih_l0`` etc.; a state_dict in torch.nn's
multi-layer naming (``weight_ih_l{k}``, what ``nn.LSTM(..., num_layers=L).state_dict()`` and
rnnlab's format-1 checkpoints hold) loads too, mapped by ``multilayer_to_stack_keys``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from rnnlab.config import CELL_TYPES
from rnnlab.nn.recurrent import State

WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_MULTILAYER_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")


class LayerWeights(NamedTuple):
    """One layer's parameters in torch.nn's layout (gate blocks stacked in its order)."""

    weight_ih: torch.Tensor  # (G*H, I)
    weight_hh: torch.Tensor  # (G*H, H)
    bias_ih: torch.Tensor | None  # (G*H,), None without biases
    bias_hh: torch.Tensor | None


def make_layer(cell: str, input_size: int, hidden_size: int, bias: bool = True) -> nn.RNNBase:
    """One fused torch.nn layer of ``cell``."""
    if cell == "lstm":
        return nn.LSTM(input_size, hidden_size, bias=bias)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size, bias=bias)
    if cell in ("rnn_tanh", "rnn_relu"):
        return nn.RNN(input_size, hidden_size, nonlinearity=cell[len("rnn_"):], bias=bias)
    raise ValueError(f"unknown cell {cell!r} (cells: {', '.join(CELL_TYPES)})")


class RecurrentStack(nn.Module):
    """``num_layers`` fused layers of one cell, composed in ``forward``.

    ``dropout`` acts between stacked layers (Zaremba et al. 2014; torch.nn's ``dropout`` argument,
    drawn the same way), so it does nothing for one layer.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.cell, self.input_size, self.hidden_size, self.num_layers = cell, input_size, hidden_size, num_layers
        self.layers = nn.ModuleList(
            make_layer(cell, input_size if k == 0 else hidden_size, hidden_size, bias) for k in range(num_layers))
        self.between = nn.Dropout(dropout)
        self.register_load_state_dict_pre_hook(_accept_multilayer_keys)

    def forward(self, input: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """input (T, B, I) -> output (T, B, H) and the final state (L, B, H) [each of (h, c) for LSTM]."""
        layer_states = split_state(state, self.num_layers)
        finals = []
        x = input
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = self.between(x)
            x, final = layer(x, layer_states[k])  # (T, B, I or H) -> (T, B, H); state (1, B, H)
            finals.append(final)
        return x, join_states(finals)

    def layer_weights(self, layer: int) -> LayerWeights:
        """Layer ``layer``'s parameters themselves (not copies): write to them to initialise."""
        module = self.layers[layer]
        get = lambda name: getattr(module, f"{name}_l0", None)  # noqa: E731
        return LayerWeights(*(get(name) for name in WEIGHT_NAMES))

    def multilayer_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under torch.nn's multi-layer names: ``nn.LSTM(I, H, L).load_state_dict(...)`` takes it."""
        return {f"{name}_l{k}": weight for k in range(self.num_layers)
                for name, weight in zip(WEIGHT_NAMES, self.layer_weights(k)) if weight is not None}

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, " \
               f"num_layers={self.num_layers}"


def split_state(state: State | None, num_layers: int) -> list[Any]:
    """(L, B, H) [or a pair of them] -> L per-layer states (1, B, H) [pairs], or L Nones."""
    if state is None:
        return [None] * num_layers
    if isinstance(state, tuple):
        h, c = state
        return [(h[k : k + 1], c[k : k + 1]) for k in range(num_layers)]
    return [state[k : k + 1] for k in range(num_layers)]


def join_states(states: list[Any]) -> State:
    """L per-layer states (1, B, H) [pairs] -> (L, B, H) [a pair]."""
    if isinstance(states[0], tuple):
        return torch.cat([h for h, _ in states]), torch.cat([c for _, c in states])
    return torch.cat(states)


def multilayer_to_stack_keys(state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Rename torch.nn multi-layer keys under ``prefix`` (``{prefix}weight_ih_l{k}``) to the stack's
    (``{prefix}layers.{k}.weight_ih_l0``), keeping the order; every other key is kept as it is."""
    return {_stack_key(key, prefix): value for key, value in state_dict.items()}


def _stack_key(key: str, prefix: str) -> str:
    match = _MULTILAYER_KEY.match(key[len(prefix):]) if key.startswith(prefix) else None
    if match is None:
        return key
    name, layer = match.groups()
    return f"{prefix}layers.{layer}.{name}_l0"


def _accept_multilayer_keys(module, state_dict, prefix, *_) -> None:
    """load_state_dict pre-hook: rename multi-layer keys in place before the layers load."""
    for key in [k for k in state_dict if _stack_key(k, prefix) != k]:
        state_dict[_stack_key(key, prefix)] = state_dict.pop(key)
