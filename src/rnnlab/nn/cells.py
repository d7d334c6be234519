"""Reference recurrent cells, one time step at a time, written from their equations.

They use ``torch.nn.RNN / LSTM / GRU``'s parameter layout and gate order, and read a stack's weights
through ``layer_weights(k)``, so the reference path runs on the very weights of a model's
``RecurrentStack``: ``reference_forward(model.rnn, x)`` equals ``model.rnn(x)`` in eval mode (tested),
but every h_t, c_t, gate and pre-activation is a tensor in the graph that diagnostics can read and
differentiate. It is slow (a Python loop over time); training uses the fused layers.

Equations (W_ih is (G*H, I), W_hh is (G*H, H), gate blocks stacked in this order):

- rnn_tanh / rnn_relu: h_t = f(z_t), z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
- lstm (i, f, g, o): i, f, o = sigmoid(.), g = tanh(.), c_t = f * c_{t-1} + i * g,
  h_t = o * tanh(c_t)
- gru (r, z, n): r, z = sigmoid(.), n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
  h_t = (1 - z) * n + z * h_{t-1}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from rnnlab.nn.recurrent import State, join_states, split_state

# The blocks of W_ih / W_hh rows in torch.nn's order, the pre-activations that go through tanh (relu),
# and the sigmoid gates, by cell: the one place that knows each cell's layout.
GATES = {"rnn_tanh": ("z",), "rnn_relu": ("z",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
SQUASHED = {"rnn_tanh": ("z",), "rnn_relu": ("z",), "lstm": ("z_g", "c"), "gru": ("z_n",)}
SIGMOID_GATES = {"rnn_tanh": (), "rnn_relu": (), "lstm": ("i", "f", "o"), "gru": ("r", "z")}


WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class LayerWeights(NamedTuple):
    """One layer's parameters in torch.nn's layout (gate blocks stacked in GATES' order)."""

    weight_ih: torch.Tensor  # (G*H, I)
    weight_hh: torch.Tensor  # (G*H, H)
    bias_ih: torch.Tensor | None  # (G*H,), None without biases
    bias_hh: torch.Tensor | None


# ---------------------------------------------------------------- one step of each cell
# Each returns (h_t, c_t or None, trace) where trace holds the step's intermediates by name. With
# w_ih None, x is the step's input part W_ih x_t + b_ih, computed for the whole window in one product.


def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity: str = "tanh", h_mask=None):
    z = _input_part(x, w_ih, b_ih) + _recurrent_part(h, h_mask, w_hh, b_hh)
    h_new = torch.tanh(z) if nonlinearity == "tanh" else torch.relu(z)
    return h_new, None, {"z": z}


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, h_mask=None):
    gates = _input_part(x, w_ih, b_ih) + _recurrent_part(h, h_mask, w_hh, b_hh)
    zi, zf, zg, zo = gates.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    return h_new, c_new, {"i": i, "f": f, "g": g, "o": o, "z_g": zg, "c": c_new}


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh, h_mask=None):
    gi = _input_part(x, w_ih, b_ih)
    gh = _recurrent_part(h, h_mask, w_hh, b_hh)  # the interpolation below keeps the unmasked h
    ir, iz, i_n = gi.chunk(3, dim=-1)
    hr, hz, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(ir + hr)
    z = torch.sigmoid(iz + hz)
    zn = i_n + r * h_n
    n = torch.tanh(zn)
    h_new = (1 - z) * n + z * h
    return h_new, None, {"r": r, "z": z, "n": n, "z_n": zn}


def _input_part(x: torch.Tensor, w_ih: torch.Tensor | None, b_ih: torch.Tensor | None) -> torch.Tensor:
    """W_ih x_t + b_ih; with ``w_ih`` None, x is that already (computed for every step at once)."""
    if w_ih is None:
        return x
    projected = x @ w_ih.t()
    return projected if b_ih is None else projected + b_ih


def _recurrent_part(h: torch.Tensor, h_mask: torch.Tensor | None, w_hh: torch.Tensor,
                    b_hh: torch.Tensor | None) -> torch.Tensor:
    """W_hh h_{t-1} + b_hh, or W_hh (h_{t-1} * mask) + b_hh under recurrent dropout: the mask touches
    this product only, never the state carried forward."""
    product = (h if h_mask is None else h * h_mask) @ w_hh.t()
    return product if b_hh is None else product + b_hh


def step_function(cell: str) -> Callable:
    """The step of ``cell`` as f(x, h, c, w_ih, w_hh, b_ih, b_hh, h_mask=None) -> (h, c or None, trace)."""
    if cell in ("rnn_tanh", "rnn_relu"):
        nonlinearity = cell[len("rnn_"):]
        return lambda x, h, c, *w, h_mask=None: rnn_step(x, h, *w, nonlinearity=nonlinearity, h_mask=h_mask)
    if cell == "lstm":
        return lstm_step
    if cell == "gru":
        return lambda x, h, c, *w, h_mask=None: gru_step(x, h, *w, h_mask=h_mask)
    raise ValueError(f"unknown cell {cell!r}")


# ---------------------------------------------------------------- the reference stack


@dataclass
class Trace:
    """What a reference pass saw, per layer and step (tensors stay in the autograd graph).

    ``inputs[l][t]`` is layer l's input at step t, ``hidden[l][t]`` its h_t, ``cell[l][t]`` its c_t
    (LSTM), ``steps[l][t]`` the intermediates of that step (gates, pre-activations).
    """

    inputs: list[list[torch.Tensor]] = field(default_factory=list)
    hidden: list[list[torch.Tensor]] = field(default_factory=list)
    cell: list[list[torch.Tensor]] = field(default_factory=list)
    initial: list[tuple[torch.Tensor, torch.Tensor | None]] = field(default_factory=list)
    steps: list[list[dict[str, torch.Tensor]]] = field(default_factory=list)


def reference_forward(
    rnn: nn.Module,
    input: torch.Tensor,
    hx: State | None = None,
    trace: Trace | None = None,
) -> tuple[torch.Tensor, State]:
    """Run a stack (``RecurrentStack`` or ``ReferenceRNN``: anything with ``cell``, ``layer_sizes`` and
    ``layer_weights(k)``) step by step on input (T, B, I).

    Same results as the fused stack in eval mode (dropout between layers is not applied: the
    reference path exists for measurement). Fills ``trace`` when one is given.
    """
    cell = rnn.cell
    step = step_function(cell)
    steps, batch = input.shape[0], input.shape[1]
    initial = split_state(hx, rnn.layer_sizes)
    layer_input = list(input.unbind(0))
    final_h, final_c = [], []
    for layer, size in enumerate(rnn.layer_sizes):
        weights = rnn.layer_weights(layer)
        zeros = input.new_zeros(batch, size)
        if initial[layer] is None:
            h, c = zeros, (zeros if cell == "lstm" else None)
        elif cell == "lstm":
            h, c = initial[layer][0][0], initial[layer][1][0]
        else:
            h, c = initial[layer][0], None
        if trace is not None:
            trace.inputs.append(layer_input)
            trace.initial.append((h, c))
            trace.hidden.append([])
            trace.cell.append([])
            trace.steps.append([])
        outputs = []
        for t in range(steps):
            h, c, record = step(layer_input[t], h, c, *weights)
            outputs.append(h)
            if trace is not None:
                trace.hidden[layer].append(h)
                if c is not None:
                    trace.cell[layer].append(c)
                trace.steps[layer].append(record)
        final_h.append(h)
        final_c.append(c)
        layer_input = outputs
    output = torch.stack(layer_input)  # (T, B, H)
    width = max(rnn.layer_sizes)
    if cell == "lstm":
        return output, join_states([(h[None], c[None]) for h, c in zip(final_h, final_c)], width)  # (layers, B, H)
    return output, join_states([h[None] for h in final_h], width)


class ReferenceRNN(nn.Module):
    """A stand-alone recurrent stack on the reference path, with torch.nn's parameter names and
    layout: ``ReferenceRNN("lstm", ...).load_state_dict(nn.LSTM(...).state_dict())`` works."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True) -> None:
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r} (cells: {', '.join(GATES)})")
        self.cell, self.input_size, self.hidden_size, self.num_layers = cell, input_size, hidden_size, num_layers
        self.layer_sizes = (hidden_size,) * num_layers
        gate_rows = len(GATES[cell]) * hidden_size
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(gate_rows, layer_in)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(gate_rows, hidden_size)))
            if bias:
                self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(gate_rows)))
                self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(gate_rows)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)  # torch.nn's default
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    def layer_weights(self, layer: int) -> LayerWeights:
        get = lambda name: getattr(self, f"{name}_l{layer}", None)  # noqa: E731
        return LayerWeights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"))

    def forward(self, input: torch.Tensor, hx: State | None = None, trace: Trace | None = None):
        return reference_forward(self, input, hx, trace)
