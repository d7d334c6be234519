"""Output layers: hidden states -> a distribution over the vocabulary.

Every output layer implements the same interface, so the model and trainer never know which one
they hold:

- ``forward(hidden (N, H), targets (N,)) -> OutputLoss``: the training loss, summed over tokens.
  A sampled or NCE layer may return an approximation here, and a penalty term the model passes on.
- ``exact_loss(hidden, targets) -> OutputLoss``: the exact, normalised negative log-likelihood,
  used by evaluation whatever the training loss was.
- ``log_probs(hidden (N, H)) -> (N, V)``: exact log-probabilities, for generation.

Targets equal to ``IGNORE_INDEX`` are not scored (evaluation pads its last window with them).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # F.cross_entropy's default: a target that is not scored (evaluation's padding)


class OutputLoss(NamedTuple):
    loss: torch.Tensor  # scalar: negative log-likelihood summed over the scored tokens
    tokens: torch.Tensor  # scalar int64: how many tokens were scored
    penalty: torch.Tensor | None = None  # a training-only term added after averaging (None: none)


class OutputLayer(nn.Module):
    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        raise NotImplementedError

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def exact_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        loss = F.nll_loss(self.log_probs(hidden), targets, reduction="sum", ignore_index=IGNORE_INDEX)
        return OutputLoss(loss, (targets != IGNORE_INDEX).sum())


class FullSoftmax(OutputLayer):
    """A linear map to V logits and a softmax over all of them. ``weight`` is (V, H), like
    ``nn.Linear``'s, so an embedding of the same shape can share it (weight tying)."""

    def __init__(self, hidden_size: int, vocab_size: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(vocab_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default init, so init = "default" means what PyTorch users expect.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight.size(1))
            nn.init.uniform_(self.bias, -bound, bound)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias)

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        loss = F.cross_entropy(self.logits(hidden), targets, reduction="sum", ignore_index=IGNORE_INDEX)
        return OutputLoss(loss, (targets != IGNORE_INDEX).sum())

    exact_loss = forward

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.logits(hidden), dim=-1)


def make_output_layer(kind: str, hidden_size: int, vocab_size: int) -> OutputLayer:
    if kind == "softmax":
        return FullSoftmax(hidden_size, vocab_size)
    raise ValueError(f"unknown output layer {kind!r} (layers: softmax)")
