"""The recurrent stack: single-layer fused layers, and the one place where layers meet.

::

    input (T, B, I) -> layer 0 -> between -> layer 1 -> between -> ... -> layer L-1 -> output (T, B, H)
                          |                    |                              |
                    state[0] in/out      state[1] in/out               state[L-1] in/out

Each layer is a ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` with ``num_layers=1``: cuDNN on a GPU, one ATen
kernel on the CPU, so training runs at the speed of PyTorch's own multi-layer module. ``forward`` is
the only code that hands one layer's output to the next: between-layer dropout (standard or locked)
lives there, and so do the per-forward transformations of a layer's weights, through the public
``torch.func.functional_call`` (the parameters themselves are never replaced or deleted):

- variational recurrent dropout with one mask for the batch: W_hh (m * h) = (W_hh diag(m)) h, so the
  masked columns of W_hh run on the fused kernel, exactly;
- weight-drop: DropConnect on W_hh (Merity et al. 2017);
- a mask per sequence or per step (``variational_per_sequence``, ``naive``) is no single weight: those
  layers run step by step on the reference cells (``rnnlab.nn.cells``), on the same weights.

The state is torch.nn's: h shaped (L, B, H), or (h, c) for LSTM; ``None`` means zeros. Layers may
differ in size (AWD-LSTM's last layer is as wide as the embedding): then H is the widest layer and each
layer's state fills the first of those columns, the rest zeros, so one tensor still carries the state.

Weights are read through ``layer_weights(k)`` (init, the reference cells, diagnostics), never by
attribute names. They live at ``layers.{k}.weight_ih_l0`` etc.; a state_dict in torch.nn's
multi-layer naming (``weight_ih_l{k}``, what ``nn.LSTM(..., num_layers=L).state_dict()`` and
rnnlab's format-1 checkpoints hold) loads too, mapped by ``multilayer_to_stack_keys``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from rnnlab.config import CELL_TYPES, RECURRENT_DROPOUT_KINDS, SKIP_KINDS
from rnnlab.nn.cells import WEIGHT_NAMES, LayerWeights, run_steps, step_function
from rnnlab.nn.dropout import dropout_mask, make_dropout
from rnnlab.nn.recurrent import State, join_states, split_state

_MULTILAYER_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")


@dataclass
class StackNoise:
    """What one training forward pass drew for the recurrent regularisers, per layer (None: nothing)."""

    # mask on h_{t-1} where it enters W_hh: (H,) shared by the batch, (B, H) per sequence, (T, B, H) per step
    recurrent: list[torch.Tensor | None]
    weight: list[torch.Tensor | None]  # DropConnect mask on W_hh, (G*H, H)


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

    ``hidden_size`` is every layer's size, or a sequence of ``num_layers`` sizes, bottom to top; the
    attribute ``hidden_size`` is then the last layer's (the stack's output size), ``layer_sizes`` all.
    ``skip``: ``residual`` adds each layer's input to its output (a learned projection where sizes
    differ; the shortcut bypasses the between-layer dropout), ``dense`` feeds the stack's input to every
    layer next to the layer below and projects all layers' outputs to the last layer's size (Graves
    2013). ``dilations``: layer k links h_t to h_(t - d_k) (Chang et al. 2017; see ``run_dilated``).
    ``dropout`` acts between stacked layers: ``dropout_kind = "standard"`` is torch.nn's ``dropout``
    argument, drawn the same way (Zaremba et al. 2014); ``"variational"`` keeps one mask per sequence
    for every step. ``recurrent_dropout`` masks h_{t-1} where it enters W_hh (``recurrent_dropout_kind``:
    ``variational``, ``variational_per_sequence`` or ``naive``), ``weight_drop`` is DropConnect on W_hh.
    All of them act in training mode only.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int | Sequence[int], num_layers: int = 1,
                 dropout: float = 0.0, bias: bool = True, *, dropout_kind: str = "standard",
                 recurrent_dropout: float = 0.0, recurrent_dropout_kind: str = "variational",
                 weight_drop: float = 0.0, skip: str = "none", dilations: Sequence[int] | None = None) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if recurrent_dropout_kind not in RECURRENT_DROPOUT_KINDS:
            raise ValueError(f"unknown recurrent_dropout_kind {recurrent_dropout_kind!r} "
                             f"(kinds: {', '.join(RECURRENT_DROPOUT_KINDS)})")
        for name, rate in (("recurrent_dropout", recurrent_dropout), ("weight_drop", weight_drop)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        sizes = (hidden_size,) * num_layers if isinstance(hidden_size, int) else tuple(hidden_size)
        if len(sizes) != num_layers or min(sizes) < 1:
            raise ValueError(f"hidden_size must be one size or {num_layers} sizes >= 1, got {hidden_size}")
        dilations = tuple(dilations) if dilations else (1,) * num_layers
        if len(dilations) != num_layers or min(dilations) < 1:
            raise ValueError(f"dilations must be {num_layers} integers >= 1, got {list(dilations)}")
        if skip not in SKIP_KINDS:
            raise ValueError(f"unknown skip {skip!r} (kinds: {', '.join(SKIP_KINDS)})")
        self.cell, self.input_size, self.num_layers, self.skip = cell, input_size, num_layers, skip
        self.layer_sizes, self.hidden_size, self.state_size = sizes, sizes[-1], max(sizes)
        self.dilations = dilations  # also each layer's rows in the state
        # Dense (Graves 2013): every layer above the first also reads the stack's input.
        inputs = (input_size, *((input_size + h if skip == "dense" else h) for h in sizes[:-1]))
        self.layers = nn.ModuleList(make_layer(cell, inputs[k], sizes[k], bias) for k in range(num_layers))
        if skip == "residual":
            # h^k = layer_k(x) + x, through a learned projection where the sizes differ
            self.shortcuts = nn.ModuleList(nn.Identity() if inputs[k] == sizes[k] else
                                           nn.Linear(inputs[k], sizes[k], bias=False) for k in range(num_layers))
        if skip == "dense":
            # every layer's output reaches the output, projected to the last layer's size
            self.readout = nn.Linear(sum(sizes), sizes[-1], bias=False)
        self.between = make_dropout(dropout, dropout_kind)
        self.recurrent_dropout, self.recurrent_dropout_kind = recurrent_dropout, recurrent_dropout_kind
        self.weight_drop = weight_drop
        self.register_load_state_dict_pre_hook(_accept_multilayer_keys)

    def forward(self, input: torch.Tensor, state: State | None = None,
                noise: StackNoise | None = None) -> tuple[torch.Tensor, State]:
        """input (T, B, I) -> output (T, B, H) and the final state (R, B, state_size) [each of (h, c) for
        LSTM; R = num_layers unless layers are dilated].

        ``noise`` fixes the recurrent masks (tests, measurements); by default a training pass draws
        fresh ones (``sample_noise``) and an eval pass uses none."""
        if noise is None and self.training:
            noise = self.sample_noise(input.size(0), input.size(1), input)
        return self.compose(input, state, lambda k, x, layer_state: self._run_layer(k, x, layer_state, noise))

    def compose(self, input: torch.Tensor, state: State | None,
                run_layer: Callable[[int, torch.Tensor, Any], tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, State]:
        """Where the layers meet: between-layer dropout and the skip connections around ``run_layer(k,
        x, layer_state) -> (output, final layer_state)``, which runs layer k on the fused kernel
        (``forward``) or step by step on the reference cells (``rnnlab.nn.cells.reference_forward``)."""
        states = split_state(state, self.layer_sizes, self.dilations)
        outputs, finals = [], []
        x = input
        for k in range(self.num_layers):
            if k == 0:
                layer_input = input
            elif self.skip == "dense":
                layer_input = torch.cat([input, self.between(x)], dim=-1)  # (T, B, I + H_(k-1))
            else:
                layer_input = self.between(x)
            y, final = run_layer(k, layer_input, states[k])  # (T, B, H_k)
            if self.skip == "residual":
                y = y + self.shortcuts[k](x)  # the shortcut skips the dropout too: an undamped path
            outputs.append(y)
            finals.append(final)
            x = y
        if self.skip == "dense":
            x = self.readout(torch.cat(outputs, dim=-1))  # (T, B, sum H_k) -> (T, B, H)
        return x, join_states(finals, self.state_size)

    def sample_noise(self, steps: int, batch: int, like: torch.Tensor) -> StackNoise | None:
        """Fresh masks for one forward pass over ``steps`` x ``batch`` (None when nothing is on)."""
        if not (self.recurrent_dropout or self.weight_drop):
            return None
        p = self.recurrent_dropout
        lead = {"variational": (), "variational_per_sequence": (batch,),
                "naive": (steps, batch)}[self.recurrent_dropout_kind]
        recurrent = [dropout_mask((*lead, h), p, like) if p else None for h in self.layer_sizes]
        weight = [dropout_mask(tuple(self.layer_weights(k).weight_hh.shape), self.weight_drop, like)
                  if self.weight_drop else None for k in range(self.num_layers)]
        return StackNoise(recurrent, weight)

    def _run_layer(self, k: int, x: torch.Tensor, state: Any, noise: StackNoise | None) -> tuple[torch.Tensor, Any]:
        layer, dilation = self.layers[k], self.dilations[k]
        h_mask = noise.recurrent[k] if noise is not None else None
        w_mask = noise.weight[k] if noise is not None else None
        if h_mask is None and w_mask is None:
            run = layer
        else:
            w_hh = self.layer_weights(k).weight_hh
            if w_mask is not None:
                w_hh = w_hh * w_mask  # DropConnect on the recurrent weights (Merity et al. 2017)
            if h_mask is not None and h_mask.dim() == 1:
                # One mask for the whole batch: W_hh (m * h) = (W_hh diag(m)) h, so masking W_hh's columns
                # once keeps the fused kernel and is exact (Gal & Ghahramani 2016's mask, held for the window).
                w_hh, h_mask = w_hh * h_mask, None
            if h_mask is not None:
                return self._run_stepwise(k, x, state, w_hh, h_mask)
            run = lambda inputs, hx: functional_call(layer, {"weight_hh_l0": w_hh}, (inputs, hx))  # noqa: E731
        if dilation == 1:
            return run(x, state)
        return run_dilated(run, x, state, dilation, self.layer_sizes[k], lstm=self.cell == "lstm")

    def _run_stepwise(self, k: int, x: torch.Tensor, state: Any, w_hh: torch.Tensor,
                      h_mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """A mask per sequence (B, H) or per step (T, B, H) on h_{t-1}: the reference cells, step by step."""
        w_ih, _, b_ih, b_hh = self.layer_weights(k)
        projected = nn.functional.linear(x, w_ih, b_ih)  # (T, B, I) -> (T, B, G*H): every step's input part at once
        step = step_function(self.cell)
        per_step = h_mask.dim() == 3

        def advance(t: int, h: torch.Tensor, c: torch.Tensor | None):
            return step(projected[t], h, c, None, w_hh, None, b_hh, h_mask=h_mask[t] if per_step else h_mask)

        outputs, final = run_steps(advance, x.size(0), state, x.new_zeros(x.size(1), self.layer_sizes[k]),
                                   self.dilations[k], lstm=self.cell == "lstm")
        return torch.stack([s.h for s in outputs]), final

    def layer_weights(self, layer: int) -> LayerWeights:
        """Layer ``layer``'s parameters themselves (not copies): write to them to initialise."""
        module = self.layers[layer]
        get = lambda name: getattr(module, f"{name}_l0", None)  # noqa: E731
        return LayerWeights(*(get(name) for name in WEIGHT_NAMES))

    def multilayer_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under torch.nn's multi-layer names: ``nn.LSTM(I, H, L).load_state_dict(...)`` takes it.
        Only a plain stack has such a twin (no skip connections, dilations or layers of different sizes)."""
        if self.skip != "none" or set(self.dilations) != {1} or len(set(self.layer_sizes)) != 1:
            raise ValueError("only a plain stack (skip none, dilations 1, one layer size) is a torch.nn "
                             "multi-layer module")
        return {f"{name}_l{k}": weight for k in range(self.num_layers)
                for name, weight in zip(WEIGHT_NAMES, self.layer_weights(k)) if weight is not None}

    def extra_repr(self) -> str:
        sizes = self.hidden_size if len(set(self.layer_sizes)) == 1 else list(self.layer_sizes)
        return f"cell={self.cell!r}, input_size={self.input_size}, hidden_size={sizes}, num_layers={self.num_layers}"


def run_dilated(run: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]], x: torch.Tensor, state: Any,
                dilation: int, hidden_size: int, *, lstm: bool) -> tuple[torch.Tensor, Any]:
    """One layer whose recurrence links step t to step t - d (Chang et al. 2017), on the fused kernel.

    The window's steps are d interleaved sub-sequences (r, r + d, r + 2d, ...), folded into the batch,
    so ``run`` (the layer: (T', B', I) and its state -> output and final state) runs once or twice. The
    state holds the layer's states after the last d steps, oldest first ((d, B, H), each of (h, c) for
    LSTM; None: zeros): sub-sequence r starts from row r, and the window leaves its last d steps, so any
    window length (a multiple of d or not, shorter than d or not) continues exactly where it stopped."""
    steps, batch, d = x.size(0), x.size(1), dilation
    parts = (lambda state: list(state)) if lstm else (lambda state: [state])  # noqa: E731
    whole = (lambda parts: tuple(parts)) if lstm else (lambda parts: parts[0])  # noqa: E731
    longer, length = steps % d, steps // d  # the first ``longer`` sub-sequences have one step more
    outputs, positions, finals = [], [], []
    for first, last, count in ((0, longer, length + 1), (longer, d, length)):
        n = last - first
        if n == 0:
            continue
        rows = None if state is None else [part[first:last] for part in parts(state)]  # (n, B, H) each
        if count == 0:  # a window shorter than d: these sub-sequences have no step in it
            finals.append(rows or [x.new_zeros(n, batch, hidden_size)] * (2 if lstm else 1))
            continue
        steps_of = torch.arange(first, last, device=x.device) + d * torch.arange(count, device=x.device)[:, None]
        where = steps_of.flatten()  # (count * n,): the window's steps, sub-sequence-major within a row
        folded = x[where].reshape(count, n * batch, x.size(2))  # (count, n*B, I)
        initial = None if rows is None else whole([r.reshape(1, n * batch, hidden_size) for r in rows])
        y, final = run(folded, initial)
        outputs.append(y.reshape(count * n, batch, hidden_size))
        positions.append(where)
        finals.append([part.reshape(n, batch, hidden_size) for part in parts(final)])
    output = torch.cat(outputs)[torch.cat(positions).argsort()]  # back to time order, (T, B, H)
    # Sub-sequence r ended at row (r - longer) mod d of the window's last d steps (oldest first): a roll by
    # -longer puts the rows in time order, where the next window's sub-sequences look for them.
    rolled = [torch.cat([f[i] for f in finals]).roll(-longer, 0) for i in range(2 if lstm else 1)]
    return output, whole(rolled)


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
