"""Weight initialisation shared by every model with a ``RecurrentStack`` at ``model.rnn``."""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnlab.config import ModelConfig
from rnnlab.nn.cells import GATES


@torch.no_grad()
def initialize(model: nn.Module, config: ModelConfig) -> None:
    """Apply ``model.init``, then ``recurrent_init`` and ``recurrent_scale`` to every W_hh, then
    ``forget_bias``. Draws from the global torch RNG: seed first."""
    if config.init == "uniform":
        # Zaremba et al. 2014: every parameter, embeddings and biases included, U[-a, a].
        for param in model.parameters():
            param.uniform_(-config.init_range, config.init_range)
    rnn = model.rnn
    blocks = len(GATES[config.cell])
    for layer in range(rnn.num_layers):
        weights = rnn.layer_weights(layer)
        for block in weights.weight_hh.chunk(blocks, dim=0):  # views: (H, H) per gate, in torch's gate order
            init_recurrent_block(block, config.recurrent_init, config.recurrent_scale)
        if config.forget_bias is not None:
            # Gate order i, f, g, o: rows [H, 2H) are the forget gate; b_ih + b_hh is what acts.
            hidden = weights.weight_hh.size(1)
            weights.bias_ih[hidden : 2 * hidden] = config.forget_bias
            weights.bias_hh[hidden : 2 * hidden] = 0.0


@torch.no_grad()
def init_recurrent_block(block: torch.Tensor, kind: str, scale: float | None) -> None:
    """Initialise one square (H, H) recurrent matrix in place."""
    if kind == "default":
        bound = 1 / math.sqrt(block.size(1))  # torch.nn.RNN/LSTM/GRU's default
        block.uniform_(-bound, bound)
    elif kind == "orthogonal":
        block.copy_(nn.init.orthogonal_(torch.empty_like(block)))
    elif kind == "identity":  # IRNN (Le et al. 2015)
        block.copy_(torch.eye(block.size(0), dtype=block.dtype, device=block.device))
    elif kind != "same":
        raise ValueError(f"unknown recurrent_init {kind!r}")
    if scale is not None:
        sigma = torch.linalg.matrix_norm(block, ord=2)
        if sigma > 0:
            block.mul_(scale / sigma)
