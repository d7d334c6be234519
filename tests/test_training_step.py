"""One rnnlab step against a plain PyTorch step, and truncated BPTT against one long pass."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from rnnlab.config import ModelConfig, TrainConfig
from rnnlab.models import RNNLanguageModel
from rnnlab.nn.recurrent import detach_state
from rnnlab.nn.stack import WEIGHT_NAMES
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
        lstm.load_state_dict(model.rnn.multilayer_state_dict())
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
    for k in range(L):
        for name, ours_param in zip(WEIGHT_NAMES, model.rnn.layer_weights(k)):
            assert_close(ours_param, getattr(lstm, f"{name}_l{k}"), msg=f"{name}_l{k}")
    if clip_norm:
        assert norm > clip_norm, "the test must exercise clipping"


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_two_bptt_windows_with_carried_state_equal_one_long_pass(cell):
    model = RNNLanguageModel.from_config(ModelConfig(cell=cell, num_layers=2, hidden_size=H, embedding_dim=E), V)
    tokens = torch.randint(V, (2 * T, B))
    whole, whole_state = model.features(tokens)
    first, state = model.features(tokens[:T])
    second, final_state = model.features(tokens[T:], detach_state(state))
    assert_close(torch.cat([first, second]), whole)
    for a, b in zip(detach_state(final_state) if cell == "lstm" else [final_state],
                    whole_state if cell == "lstm" else [whole_state]):
        assert_close(a, b)


def test_detached_state_cuts_the_graph():
    model = RNNLanguageModel.from_config(ModelConfig(cell="lstm", hidden_size=H, embedding_dim=E), V)
    _, state = model.features(torch.randint(V, (T, B)))
    assert state[0].requires_grad
    assert not any(s.requires_grad for s in detach_state(state))


def _ddp_rank(rank: int, world: int, init_file: str, out_dir: str, weights: dict, inputs, targets) -> None:
    """One DistributedDataParallel rank: its own columns of the batch, one train_step through the wrapper."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = RNNLanguageModel(V, cell="lstm", embedding_dim=E, hidden_size=H, num_layers=L)
        model.load_state_dict(weights)
        wrapped = nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        columns = slice(rank * B, (rank + 1) * B)
        train_step(wrapped, optimizer, inputs[:, columns], targets[:, columns], None, clip_norm=0.1,
                   loss_average="tokens")
        torch.save(model.state_dict(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_distributed_wrapper_sees_the_loss_and_synchronises_the_update(tmp_path):
    """Two gloo ranks with B columns each take the step one process takes with all 2B columns."""
    torch.manual_seed(0)
    model = RNNLanguageModel(V, cell="lstm", embedding_dim=E, hidden_size=H, num_layers=L)
    inputs, targets = torch.randint(V, (T, 2 * B)), torch.randint(V, (T, 2 * B))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    torch.multiprocessing.spawn(_ddp_rank, args=(2, str(tmp_path / "init"), str(tmp_path), weights, inputs, targets),
                                nprocs=2, join=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    train_step(model, optimizer, inputs, targets, None, clip_norm=0.1, loss_average="tokens")
    for rank in range(2):
        ranked = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in model.state_dict().items():
            assert_close(ranked[name], value, msg=f"rank {rank}: {name}")
    assert not torch.equal(model.state_dict()["output.weight"], weights["output.weight"])
