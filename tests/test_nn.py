import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from rnnlab.config import ModelConfig
from rnnlab.models import RNNLanguageModel
from rnnlab.nn import IGNORE_INDEX, FullSoftmax
from rnnlab.nn.output import OutputLayer


def test_full_softmax_loss_equals_cross_entropy():
    layer = FullSoftmax(4, 11)
    hidden, targets = torch.randn(7, 4, requires_grad=True), torch.randint(11, (7,))
    out = layer(hidden, targets)
    logits = hidden @ layer.weight.t() + layer.bias
    assert_close(out.loss, F.cross_entropy(logits, targets, reduction="sum"))
    assert out.tokens.item() == 7
    (grad,) = torch.autograd.grad(out.loss, hidden)
    (ref,) = torch.autograd.grad(F.cross_entropy(logits, targets, reduction="sum"), hidden)
    assert_close(grad, ref)


def test_ignored_targets_are_not_scored():
    layer = FullSoftmax(4, 11)
    hidden, targets = torch.randn(6, 4), torch.randint(11, (6,))
    targets[4:] = IGNORE_INDEX
    out = layer(hidden, targets)
    assert out.tokens.item() == 4
    assert_close(out.loss, layer(hidden[:4], targets[:4]).loss)
    # the interface's generic exact_loss (through log_probs) agrees with the fused one
    assert_close(OutputLayer.exact_loss(layer, hidden, targets).loss, out.loss)


def test_log_probs_are_normalised():
    log_probs = FullSoftmax(4, 11).log_probs(torch.randn(5, 4))
    assert_close(log_probs.exp().sum(-1), torch.ones(5))


def test_uniform_init_covers_every_parameter_and_forget_bias_is_set():
    model = RNNLanguageModel.from_config(
        ModelConfig(hidden_size=6, embedding_dim=6, init="uniform", init_range=0.05, forget_bias=1.0), 11)
    for name, param in model.named_parameters():
        if "bias" in name and "rnn" in name:
            continue
        assert param.abs().max() <= 0.05, name
    for layer in range(model.rnn.num_layers):
        weights = model.rnn.layer_weights(layer)
        b = weights.bias_ih + weights.bias_hh
        assert_close(b[6:12], torch.ones(6))
        assert b[:6].abs().max() <= 0.1


def test_tied_weights_share_one_parameter():
    model = RNNLanguageModel(11, embedding_dim=6, hidden_size=6, tie_weights=True)
    assert model.embedding.weight is model.output.weight
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in RNNLanguageModel(11, embedding_dim=6, hidden_size=6).parameters())
    with pytest.raises(ValueError, match="last layer's size == embedding_dim, got 6 != 4"):
        RNNLanguageModel(11, embedding_dim=4, hidden_size=6, tie_weights=True)
    wide = RNNLanguageModel(11, embedding_dim=4, hidden_size=(6, 4), tie_weights=True)  # AWD-LSTM's shape
    assert wide.embedding.weight is wide.output.weight and wide.output.weight.shape == (11, 4)


def test_model_forward_returns_the_loss_of_the_manual_composition():
    model = RNNLanguageModel(11, cell="gru", embedding_dim=5, hidden_size=6, num_layers=2)
    tokens, targets = torch.randint(11, (4, 3)), torch.randint(11, (4, 3))
    out = model(tokens, targets)
    features, state = model.rnn(model.embedding(tokens))
    logits = model.output.logits(features.reshape(-1, 6))
    assert_close(out.loss, F.cross_entropy(logits, targets.reshape(-1), reduction="sum"))
    assert out.tokens.item() == 12 and out.penalty.item() == 0.0
    assert_close(out.state, state)
    exact = model.exact_loss(tokens, targets)
    assert_close(exact.loss, out.loss)
