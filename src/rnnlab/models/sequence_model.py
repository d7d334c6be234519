"""The model for synthetic tasks: inputs -> recurrent stack -> linear readout at every step.

It offers the interface of every rnnlab model (``rnnlab.models.base``): the loss from ``forward``,
so one trainer and one training step serve both, and the same diagnostic hooks (``rnn``,
``rnn_inputs``, ``step_costs``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rnnlab.config import ModelConfig, RegularizationConfig
from rnnlab.data.synthetic import Task
from rnnlab.models.base import NO_REGULARIZATION, ModelOutput, RecurrentModel, make_stack
from rnnlab.nn.dropout import activation_penalty, make_dropout
from rnnlab.nn.init import initialize
from rnnlab.nn.recurrent import State


class SequenceModel(RecurrentModel):
    def __init__(self, task: Task, *, cell: str = "lstm", hidden_size: int | Sequence[int] = 128, num_layers: int = 1,
                 embedding_dim: int = 32, regularization: RegularizationConfig = NO_REGULARIZATION,
                 skip: str = "none", dilations: Sequence[int] = ()) -> None:
        super().__init__()
        self.task = task
        # Token inputs (copy, temporal order) go through an embedding; real-valued ones (adding) do not.
        self.embedding = nn.Embedding(task.input_vocab, embedding_dim) if task.input_vocab else None
        input_size = embedding_dim if task.input_vocab else task.input_dim
        reg = regularization
        self.input_dropout = make_dropout(reg.input_dropout, reg.dropout_kind)
        self.rnn = make_stack(cell, input_size, hidden_size, num_layers, reg, skip=skip, dilations=dilations)
        self.output_dropout = make_dropout(reg.output_dropout, reg.dropout_kind)
        self.ar, self.tar = reg.ar, reg.tar
        self.readout = nn.Linear(self.rnn.hidden_size, task.output_dim)  # the last layer's size

    @classmethod
    def from_config(cls, config: ModelConfig, task: Task,
                    regularization: RegularizationConfig = NO_REGULARIZATION) -> SequenceModel:
        model = cls(task, cell=config.cell, hidden_size=config.layer_sizes, num_layers=config.num_layers,
                    embedding_dim=config.embedding_dim, regularization=regularization, skip=config.skip,
                    dilations=config.dilations)
        initialize(model, config)
        return model

    def rnn_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """(T, B) ids or (T, B, D) features -> (T, B, I) inputs of the recurrent stack (input dropout in training)."""
        return self.input_dropout(self.embedding(inputs) if self.embedding is not None else inputs)

    def features(self, inputs: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """-> the stack's outputs (T, B, H) and the final state."""
        return self.rnn(self.rnn_inputs(inputs), state)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> ModelOutput:
        """The task's loss, summed over the scored steps, and the AR / TAR penalties."""
        hidden, state = self.features(inputs, state)
        dropped = self.output_dropout(hidden)
        out = self.task.loss(self.readout(dropped), targets)
        penalty = activation_penalty(hidden, dropped, self.ar, self.tar) if self.training else out.loss.new_zeros(())
        return ModelOutput(out.loss, out.tokens, penalty, state)

    def exact_loss(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> ModelOutput:
        """The task's loss (exact: tasks have no sampled objective), without penalties."""
        hidden, state = self.features(inputs, state)
        out = self.task.loss(self.read(hidden), targets)
        return ModelOutput(out.loss, out.tokens, out.loss.new_zeros(()), state)

    def read(self, features: torch.Tensor) -> torch.Tensor:
        """(T, B, H) recurrent outputs -> (T, B, O) readouts."""
        return self.readout(self.output_dropout(features))

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """(T, B, O) readouts at every step."""
        return self.read(self.features(inputs)[0])

    def step_costs(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-step costs (T,) from the recurrent outputs: what gradient-flow diagnostics differentiate."""
        return self.task.step_costs(self.read(features), targets)
