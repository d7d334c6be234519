"""The language model: embedding -> recurrent stack -> dropout -> output layer.

Shapes are time-major, like ``nn.LSTM``'s default and the TBPTT batches: tokens (T, B).
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.config import ModelConfig
from rnnlab.models.base import ModelOutput, RecurrentModel
from rnnlab.nn.init import initialize
from rnnlab.nn.output import OutputLoss, make_output_layer
from rnnlab.nn.recurrent import State
from rnnlab.nn.stack import RecurrentStack


class RNNLanguageModel(RecurrentModel):
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
        self.rnn = RecurrentStack(cell, embedding_dim, hidden_size, num_layers, dropout)  # between layers
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

    def features(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """tokens (T, B) -> features (T, B, H) for the output layer, and the final state."""
        hidden, state = self.rnn(self.rnn_inputs(tokens), state)  # (T, B, E) -> (T, B, H)
        return self.output_dropout(hidden), state

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> ModelOutput:
        """The training objective over the window's targets (T, B): the output layer's loss, summed."""
        return self._score(self.output, tokens, targets, state)

    def exact_loss(self, tokens: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> ModelOutput:
        """The exact, normalised negative log-likelihood (evaluation), summed over the targets."""
        return self._score(self.output.exact_loss, tokens, targets, state)

    def _score(self, scorer, tokens: torch.Tensor, targets: torch.Tensor, state: State | None) -> ModelOutput:
        features, state = self.features(tokens, state)
        flat = features.reshape(-1, features.size(-1))  # (T, B, H) -> (T*B, H) for the output layer
        out: OutputLoss = scorer(flat, targets.reshape(-1))
        penalty = out.penalty if out.penalty is not None else out.loss.new_zeros(())
        return ModelOutput(out.loss, out.tokens, penalty, state)

    # Diagnostic hooks, shared with SequenceModel: the recurrent stack's inputs, and the cost at
    # each step computed from recurrent outputs (eval mode: no dropout).
    def rnn_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.input_dropout(self.embedding(tokens))

    def step_costs(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(T, B, H) recurrent outputs -> (T,) cross-entropy at each step, averaged over the batch."""
        steps, batch = targets.shape
        flat = self.output_dropout(features).reshape(steps * batch, -1)
        log_probs = self.output.log_probs(flat)
        nll = -log_probs.gather(1, targets.reshape(-1, 1)).view(steps, batch)
        return nll.mean(dim=1)
