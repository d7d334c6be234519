"""What every rnnlab model offers the trainer, evaluation and diagnostics.

::

    inputs (T, B) -> rnn_inputs -> rnn: RecurrentStack -> features (T, B, H) -> head -> loss

- ``forward(inputs, targets, state) -> ModelOutput``: the training objective. Training calls the
  model itself (``model(inputs, targets, state)``), so a wrapper such as DistributedDataParallel
  sees the whole graph, penalty terms included.
- ``exact_loss(inputs, targets, state) -> ModelOutput``: the exact, normalised loss for evaluation,
  whatever the training objective approximates.
- ``features(inputs, state) -> (features, state)``: the stack's outputs, for generation.
- ``rnn_inputs(inputs)`` and ``step_costs(features, targets) -> (T,)``: the diagnostic hooks; the
  reference cells run between them on the stack's own weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from rnnlab.config import RegularizationConfig
from rnnlab.nn.recurrent import State
from rnnlab.nn.stack import RecurrentStack

NO_REGULARIZATION = RegularizationConfig()  # every regulariser off (frozen, so one instance serves all)


class ModelOutput(NamedTuple):
    loss: torch.Tensor  # scalar: the loss summed over the scored targets
    tokens: torch.Tensor  # scalar int64: targets scored
    penalty: torch.Tensor  # scalar added after averaging the loss: regularisation terms (0 when there are none)
    state: State  # the final recurrent state (in the graph: detach it between windows)


class RecurrentModel(nn.Module):
    rnn: RecurrentStack

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> ModelOutput:
        raise NotImplementedError

    def exact_loss(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> ModelOutput:
        raise NotImplementedError

    def features(self, inputs: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def rnn_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step_costs(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def make_stack(cell: str, input_size: int, hidden_size: int | Sequence[int], num_layers: int,
               regularization: RegularizationConfig, *, skip: str = "none",
               dilations: Sequence[int] = ()) -> RecurrentStack:
    """The recurrent stack with the regularisers that act inside it (between layers, on W_hh)."""
    reg = regularization
    return RecurrentStack(cell, input_size, hidden_size, num_layers, reg.hidden_dropout,
                          dropout_kind=reg.dropout_kind, recurrent_dropout=reg.recurrent_dropout,
                          recurrent_dropout_kind=reg.recurrent_dropout_kind, weight_drop=reg.weight_drop,
                          skip=skip, dilations=dilations)
