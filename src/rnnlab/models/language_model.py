"""The language model: embedding -> recurrent stack -> dropout -> output layer.

::

    tokens (T, B) -> embedding [embedding dropout] -> input dropout -> RecurrentStack [hidden, recurrent
    dropout, weight-drop] -> output dropout -> output layer -> loss (+ AR / TAR penalties)

Shapes are time-major, like ``nn.LSTM``'s default and the TBPTT batches: tokens (T, B).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rnnlab.config import ModelConfig, OutputConfig, RegularizationConfig
from rnnlab.models.base import NO_REGULARIZATION, ModelOutput, RecurrentModel, make_stack
from rnnlab.nn.dropout import activation_penalty, embedding_row_mask, make_dropout
from rnnlab.nn.init import initialize
from rnnlab.nn.output import make_output_layer
from rnnlab.nn.recurrent import State


class RNNLanguageModel(RecurrentModel):
    def __init__(
        self,
        vocab_size: int,
        *,
        cell: str = "lstm",
        embedding_dim: int = 200,
        hidden_size: int | Sequence[int] = 200,
        num_layers: int = 2,
        tie_weights: bool = False,
        output: str = "softmax",
        output_settings: OutputConfig | None = None,
        counts: Sequence[int] | None = None,
        device_type: str = "cpu",
        regularization: RegularizationConfig = NO_REGULARIZATION,
        skip: str = "none",
        dilations: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.cell = cell
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        reg = regularization
        self.embedding_dropout = reg.embedding_dropout
        self.input_dropout = make_dropout(reg.input_dropout, reg.dropout_kind)
        self.rnn = make_stack(cell, embedding_dim, hidden_size, num_layers, reg, skip=skip, dilations=dilations)
        if tie_weights and self.rnn.hidden_size != embedding_dim:
            raise ValueError(f"tie_weights needs the last layer's size == embedding_dim, got {self.rnn.hidden_size} "
                             f"!= {embedding_dim}")
        self.output_dropout = make_dropout(reg.output_dropout, reg.dropout_kind)
        self.ar, self.tar = reg.ar, reg.tar
        # The output layer reads the last layer; counts (the vocabulary's training frequencies) feed the unigram
        # sampler and adaptive's cutoffs; device_type decides output = auto.
        settings = output_settings or OutputConfig()
        self.output = make_output_layer(
            output, self.rnn.hidden_size, vocab_size, counts=counts, num_samples=settings.num_samples,
            sampler=settings.sampler, unigram_power=settings.unigram_power, replacement=settings.replacement,
            cutoffs=settings.cutoffs, div_value=settings.div_value, device_type=device_type)
        if tie_weights:
            # The output layer owns the (V, H) matrix; the embedding reads the same Parameter.
            self.embedding.weight = self.output.weight

    @classmethod
    def from_config(cls, config: ModelConfig, vocab_size: int,
                    regularization: RegularizationConfig = NO_REGULARIZATION, *,
                    output_settings: OutputConfig | None = None, counts: Sequence[int] | None = None,
                    device_type: str = "cpu") -> RNNLanguageModel:
        model = cls(
            vocab_size,
            cell=config.cell,
            embedding_dim=config.embedding_dim,
            hidden_size=config.layer_sizes,
            num_layers=config.num_layers,
            tie_weights=config.tie_weights,
            output=config.output,
            output_settings=output_settings,
            counts=counts,
            device_type=device_type,
            regularization=regularization,
            skip=config.skip,
            dilations=config.dilations,
        )
        initialize(model, config)
        return model

    def features(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """tokens (T, B) -> features (T, B, H) for the output layer, and the final state."""
        hidden, state = self.rnn(self.rnn_inputs(tokens), state)  # (T, B, E) -> (T, B, H)
        return self.output_dropout(hidden), state

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> ModelOutput:
        """The training objective over the window's targets (T, B): the output layer's loss, summed,
        and the AR / TAR penalties."""
        hidden, state = self.rnn(self.rnn_inputs(tokens), state)  # (T, B, E) -> (T, B, H)
        dropped = self.output_dropout(hidden)
        out = self.output(dropped.reshape(-1, dropped.size(-1)), targets.reshape(-1))  # (T*B, H) -> loss
        penalty = activation_penalty(hidden, dropped, self.ar, self.tar) if self.training else out.loss.new_zeros(())
        if out.penalty is not None:
            penalty = penalty + out.penalty
        return ModelOutput(out.loss, out.tokens, penalty, state)

    def exact_loss(self, tokens: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> ModelOutput:
        """The exact, normalised negative log-likelihood (evaluation), summed over the targets."""
        features, state = self.features(tokens, state)
        out = self.output.exact_loss(features.reshape(-1, features.size(-1)), targets.reshape(-1))
        return ModelOutput(out.loss, out.tokens, out.loss.new_zeros(()), state)

    # Diagnostic hooks, shared with SequenceModel: the recurrent stack's inputs, and the cost at
    # each step computed from recurrent outputs (eval mode: no dropout).
    def rnn_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (T, B) -> (T, B, E) inputs of the stack, with embedding and input dropout in training."""
        embedded = self.embedding(tokens)
        if self.training and self.embedding_dropout:
            # A dropped word type is zero at every occurrence in the batch (Gal & Ghahramani 2016).
            mask = embedding_row_mask(self.vocab_size, self.embedding_dropout, embedded)
            embedded = embedded * mask[tokens].unsqueeze(-1)  # (V,) -> (T, B, 1)
        return self.input_dropout(embedded)

    def step_costs(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(T, B, H) recurrent outputs -> (T,) cross-entropy at each step, averaged over the batch."""
        steps, batch = targets.shape
        flat = self.output_dropout(features).reshape(steps * batch, -1)
        log_probs = self.output.log_probs(flat)
        nll = -log_probs.gather(1, targets.reshape(-1, 1)).view(steps, batch)
        return nll.mean(dim=1)
