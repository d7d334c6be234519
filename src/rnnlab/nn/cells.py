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
from typing import Any, NamedTuple

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


class Step(NamedTuple):
    h: torch.Tensor  # (B, H)
    c: torch.Tensor | None  # (B, H) for LSTM
    record: dict[str, torch.Tensor]  # the step's intermediates (gates, pre-activations)
    previous: tuple[torch.Tensor, torch.Tensor | None]  # the (h, c) this step read: t - 1, or t - d when dilated


def run_steps(advance: Callable[[int, torch.Tensor, torch.Tensor | None], tuple], steps: int, state: Any,
              zeros: torch.Tensor, dilation: int = 1, *, lstm: bool) -> tuple[list[Step], Any]:
    """One layer step by step over a window: ``advance(t, h_prev, c_prev) -> (h, c, record)``.

    ``state`` holds the layer's (h, c) after each of the last ``dilation`` steps, oldest first ((d, B, H)
    each; None: ``zeros``); step t reads the state d steps back. Returns the steps and that state after
    the window's last d steps."""
    if state is None:
        memory = [(zeros, zeros if lstm else None)] * dilation
    elif lstm:
        memory = list(zip(state[0].unbind(0), state[1].unbind(0)))
    else:
        memory = [(h, None) for h in state.unbind(0)]
    taken = []
    for t in range(steps):
        previous = memory[t]
        h, c, record = advance(t, *previous)
        memory.append((h, c))
        taken.append(Step(h, c, record, previous))
    last = memory[-dilation:]
    final_h = torch.stack([h for h, _ in last])  # (d, B, H)
    return taken, ((final_h, torch.stack([c for _, c in last])) if lstm else final_h)


@dataclass
class Trace:
    """What a reference pass saw, per layer and step (tensors stay in the autograd graph).

    ``inputs[l][t]`` is layer l's input at step t, ``hidden[l][t]`` its h_t, ``cell[l][t]`` its c_t
    (LSTM), ``steps[l][t]`` the intermediates of that step (gates, pre-activations), ``previous[l][t]``
    the (h, c) the step read (step t - 1's, or t - d's in a dilated layer; the initial state at first).
    """

    inputs: list[list[torch.Tensor]] = field(default_factory=list)
    hidden: list[list[torch.Tensor]] = field(default_factory=list)
    cell: list[list[torch.Tensor]] = field(default_factory=list)
    previous: list[list[tuple[torch.Tensor, torch.Tensor | None]]] = field(default_factory=list)
    steps: list[list[dict[str, torch.Tensor]]] = field(default_factory=list)


def reference_forward(
    rnn: nn.Module,
    input: torch.Tensor,
    hx: State | None = None,
    trace: Trace | None = None,
) -> tuple[torch.Tensor, State]:
    """Run a stack (``RecurrentStack`` or ``ReferenceRNN``: anything with ``cell``, ``layer_sizes`` and
    ``layer_weights(k)``) step by step on input (T, B, I).

    Same results as the fused stack in eval mode: a ``RecurrentStack`` composes the layers itself
    (``compose``: skip connections, dilations), so both paths share that code; dropout is the
    module's, off in eval mode, where the reference path is used for measurement. Fills ``trace``
    when one is given.
    """
    cell = rnn.cell
    step = step_function(cell)
    dilations = getattr(rnn, "dilations", (1,) * len(rnn.layer_sizes))

    def run_layer(layer: int, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        weights = rnn.layer_weights(layer)
        inputs = list(x.unbind(0))
        taken, final = run_steps(lambda t, h, c: step(inputs[t], h, c, *weights), len(inputs), state,
                                 x.new_zeros(x.size(1), rnn.layer_sizes[layer]), dilations[layer],
                                 lstm=cell == "lstm")
        if trace is not None:
            trace.inputs.append(inputs)
            trace.hidden.append([s.h for s in taken])
            trace.cell.append([s.c for s in taken] if cell == "lstm" else [])
            trace.previous.append([s.previous for s in taken])
            trace.steps.append([s.record for s in taken])
        return torch.stack([s.h for s in taken]), final  # (T, B, H)

    compose = getattr(rnn, "compose", None)
    if compose is not None:
        return compose(input, hx, run_layer)
    states, finals, x = split_state(hx, rnn.layer_sizes), [], input  # a plain chain of layers
    for layer in range(len(rnn.layer_sizes)):
        x, final = run_layer(layer, x, states[layer])
        finals.append(final)
    return x, join_states(finals, max(rnn.layer_sizes))


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
