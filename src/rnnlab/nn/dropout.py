"""Dropout for recurrent networks, one small piece per regulariser.

- ``LockedDropout(p)``: one mask per sequence, the same at every time step of a window (Gal &
  Ghahramani 2016, "variational"); ``nn.Dropout`` is the standard kind (a fresh mask per element and
  step, Zaremba et al. 2014). ``make_dropout(p, kind)`` picks one.
- ``embedding_row_mask``: embedding dropout, whole word types dropped for a batch (Gal & Ghahramani
  2016; Merity et al. 2017).
- ``dropout_mask``: the inverted-dropout mask every piece here draws (0 or 1 / (1 - p)).
- ``activation_penalty``: AR and TAR (Merity et al. 2017), penalties on the last layer's outputs.

Recurrent dropout and weight-drop act on a layer's weights and live where layers meet, in
``rnnlab.nn.stack``.
"""

from __future__ import annotations

import torch
from torch import nn


def dropout_mask(shape: tuple[int, ...], p: float, like: torch.Tensor) -> torch.Tensor:
    """Inverted dropout: each element 0 with probability p, else 1 / (1 - p), so the expectation is 1."""
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p).div_(1 - p)


class LockedDropout(nn.Module):
    """Variational ("locked") dropout on (T, B, D) inputs: one (B, D) mask for every step."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return input
        # Gal & Ghahramani 2016: one mask per sequence, shared by every time step.
        return input * dropout_mask((1, *input.shape[1:]), self.p, input)  # (1, B, D) broadcast over T

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_dropout(p: float, kind: str) -> nn.Module:
    """``standard`` -> nn.Dropout(p); ``variational`` -> LockedDropout(p)."""
    if kind == "standard":
        return nn.Dropout(p)
    if kind == "variational":
        return LockedDropout(p)
    raise ValueError(f"unknown dropout kind {kind!r} (kinds: standard, variational)")


def embedding_row_mask(num_embeddings: int, p: float, like: torch.Tensor) -> torch.Tensor:
    """A (V,) mask over word types: a dropped type is zero wherever it occurs in the batch."""
    return dropout_mask((num_embeddings,), p, like)


def activation_penalty(hidden: torch.Tensor, dropped: torch.Tensor, ar: float, tar: float) -> torch.Tensor:
    """Merity et al. 2017's penalties on the last layer's outputs (T, B, H), added to the training loss:
    AR, ``ar`` * mean(dropped output^2), keeps activations small; TAR, ``tar`` * mean((h_t - h_{t-1})^2)
    on the undropped outputs, keeps them from jumping between steps."""
    penalty = hidden.new_zeros(())
    if ar:
        penalty = penalty + ar * dropped.pow(2).mean()
    if tar and hidden.size(0) > 1:
        penalty = penalty + tar * (hidden[1:] - hidden[:-1]).pow(2).mean()
    return penalty
