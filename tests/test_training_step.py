"""One rnnlab step against a plain PyTorch step, and truncated BPTT against one long pass."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from rnnlab.config import ModelConfig, TrainConfig
from rnnlab.models import RNNLanguageModel
from rnnlab.nn.recurrent import detach_state
from rnnlab.training.loop import train_step
from rnnlab.training.optim import make_optimizer

V, E, H, L, T, B = 11, 6, 6, 2, 5, 3


def _reference_from(model: RNNLanguageModel):
    """nn.Embedding + nn.LSTM + nn.Linear holding copies of the model's weights."""
    embedding = nn.Embedding(V, E)
    lstm = nn.LSTM(E, H, L)
    linear = nn.Linear(H, V)
    with torch.no_grad():
        embedding.weight.copy_(model.embedding.weight)
        lstm.load_state_dict(model.rnn.state_dict())
        linear.weight.copy_(model.output.weight)
        linear.bias.copy_(model.output.bias)
    return embedding, lstm, linear


@pytest.mark.parametrize("loss_average", ["tokens", "sequences"])
@pytest.mark.parametrize("clip_norm", [0.05, 0.0])
def test_train_step_equals_plain_pytorch_step(loss_average, clip_norm):
    model = RNNLanguageModel.from_config(
        ModelConfig(cell="lstm", num_layers=L, hidden_size=H, embedding_dim=E, init="uniform", init_range=0.3), V)
    embedding, lstm, linear = _reference_from(model)
    ref_params = [*embedding.parameters(), *lstm.parameters(), *linear.parameters()]
    inputs = torch.randint(V, (T, B))
    targets = torch.randint(V, (T, B))
    h0 = (torch.randn(L, B, H), torch.randn(L, B, H))

    cfg = TrainConfig(lr=0.7, clip_norm=clip_norm, loss_average=loss_average)
    optimizer = make_optimizer(model.parameters(), cfg)
    ours = train_step(model, optimizer, inputs, targets, h0, clip_norm=clip_norm, loss_average=loss_average)

    output, (h, c) = lstm(embedding(inputs), h0)
    logits = linear(output.reshape(T * B, H))
    if loss_average == "tokens":
        loss = F.cross_entropy(logits, targets.reshape(-1))
    else:  # summed over time, averaged over the batch (Zaremba 2014)
        loss = F.cross_entropy(logits, targets.reshape(-1), reduction="sum") / B
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(ref_params, clip_norm if clip_norm else float("inf"))
    torch.optim.SGD(ref_params, lr=0.7).step()

    assert_close(ours.loss, F.cross_entropy(logits, targets.reshape(-1), reduction="sum").detach())
    assert_close(ours.grad_norm, norm)
    assert_close(ours.state[0], h.detach())
    assert_close(ours.state[1], c.detach())
    assert_close(model.embedding.weight, embedding.weight)
    assert_close(model.output.weight, linear.weight)
    assert_close(model.output.bias, linear.bias)
    for name, param in lstm.named_parameters():
        assert_close(getattr(model.rnn, name), param, msg=name)
    if clip_norm:
        assert norm > clip_norm, "the test must exercise clipping"


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_two_bptt_windows_with_carried_state_equal_one_long_pass(cell):
    model = RNNLanguageModel.from_config(ModelConfig(cell=cell, num_layers=2, hidden_size=H, embedding_dim=E), V)
    tokens = torch.randint(V, (2 * T, B))
    whole, whole_state = model(tokens)
    first, state = model(tokens[:T])
    second, final_state = model(tokens[T:], detach_state(state))
    assert_close(torch.cat([first, second]), whole)
    for a, b in zip(detach_state(final_state) if cell == "lstm" else [final_state],
                    whole_state if cell == "lstm" else [whole_state]):
        assert_close(a, b)


def test_detached_state_cuts_the_graph():
    model = RNNLanguageModel.from_config(ModelConfig(cell="lstm", hidden_size=H, embedding_dim=E), V)
    _, state = model(torch.randint(V, (T, B)))
    assert state[0].requires_grad
    assert not any(s.requires_grad for s in detach_state(state))
