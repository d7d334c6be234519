"""The language model: embedding -> recurrent stack -> dropout -> output layer.

Shapes are time-major, like ``nn.LSTM``'s default and the TBPTT batches: tokens (T, B).
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.config import ModelConfig
from rnnlab.nn.output import OutputLoss, make_output_layer
from rnnlab.nn.recurrent import State, make_recurrent


class RNNLanguageModel(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        *,
        cell: str = "lstm",
        embedding_dim: int = 200,
        hidden_size: int = 200,
        num_layers: int = 2,
        dropout: float = 0.0,
        tie_weights: bool = False,
        output: str = "softmax",
    ) -> None:
        super().__init__()
        if tie_weights and hidden_size != embedding_dim:
            raise ValueError(f"tie_weights needs hidden_size == embedding_dim, got {hidden_size} != {embedding_dim}")
        self.vocab_size = vocab_size
        self.cell = cell
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        # Zaremba et al. 2014: dropout on the non-recurrent connections only (input, between
        # layers inside the stack, output); the recurrent h_{t-1} -> h_t path is left alone.
        self.input_dropout = nn.Dropout(dropout)
        self.rnn = make_recurrent(cell, embedding_dim, hidden_size, num_layers, dropout)
        self.output_dropout = nn.Dropout(dropout)
        self.output = make_output_layer(output, hidden_size, vocab_size)
        if tie_weights:
            # The output layer owns the (V, H) matrix; the embedding reads the same Parameter.
            self.embedding.weight = self.output.weight

    @classmethod
    def from_config(cls, config: ModelConfig, vocab_size: int) -> RNNLanguageModel:
        model = cls(
            vocab_size,
            cell=config.cell,
            embedding_dim=config.embedding_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout,
            tie_weights=config.tie_weights,
            output=config.output,
        )
        initialize(model, config)
        return model

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """tokens (T, B) -> features (T, B, H) for the output layer, and the final state."""
        embedded = self.input_dropout(self.embedding(tokens))  # (T, B, E)
        hidden, state = self.rnn(embedded, state)  # (T, B, H)
        return self.output_dropout(hidden), state

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor, state: State | None = None,
             *, exact: bool = False) -> tuple[OutputLoss, State]:
        """Summed loss over the window's targets (T, B). ``exact`` asks the output layer for the
        normalised likelihood (evaluation) rather than its training objective."""
        features, state = self(tokens, state)
        flat = features.reshape(-1, features.size(-1))  # (T, B, H) -> (T*B, H) for the output layer
        scorer = self.output.exact_loss if exact else self.output
        return scorer(flat, targets.reshape(-1)), state


@torch.no_grad()
def initialize(model: RNNLanguageModel, config: ModelConfig) -> None:
    """Apply ``model.init`` and ``model.forget_bias``. Uses the global torch RNG: seed first."""
    if config.init == "uniform":
        # Zaremba et al. 2014: every parameter, embeddings and biases included, U[-a, a].
        for param in model.parameters():
            param.uniform_(-config.init_range, config.init_range)
    if config.forget_bias is not None:
        hidden = model.rnn.hidden_size
        for layer in range(model.rnn.num_layers):
            # Gate order i, f, g, o: rows [H, 2H) are the forget gate. b_ih + b_hh is what acts.
            getattr(model.rnn, f"bias_ih_l{layer}")[hidden : 2 * hidden] = config.forget_bias
            getattr(model.rnn, f"bias_hh_l{layer}")[hidden : 2 * hidden] = 0.0
