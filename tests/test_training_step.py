"""One rnnlab step against a plain PyTorch step, and truncated BPTT against one long pass."""

import contextlib
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

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


class _HostRead(AssertionError):
    pass


# aten ops that make the host wait for a CUDA device: reading a value (item, bool, float, int all end in
# _local_scalar_dense), and outputs whose shape depends on the data.
_SYNCING_OPS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2",
                "aten::unique_dim", "aten::unique_consecutive", "aten::equal", "aten::is_nonzero"}


def _inside_candidate_draw() -> bool:
    """The sampled / NCE candidates are drawn on the host by design (CPU tensors, then sent to the device)."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "draw" and type(frame.f_locals.get("self")).__name__ == "CandidateSampler":
            return True
        frame = frame.f_back
    return False


class _RefuseHostReads(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        boolean_index = name == "aten::index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])
        if (name in _SYNCING_OPS or boolean_index) and not _inside_candidate_draw():
            raise _HostRead(f"the training step ran {name}, which waits for the device")
        return func(*args, **(kwargs or {}))


@pytest.fixture
def no_host_reads(monkeypatch):
    """A context in which every op that would make the host wait for a CUDA device raises (on the CPU, where
    it is free). Copies to the host are not seen: on the CPU they are no copies at all."""
    def refuse(*args, **kwargs):
        raise _HostRead("the training step copied a tensor to the host")

    @contextlib.contextmanager
    def refusing():
        with monkeypatch.context() as patch, _RefuseHostReads():
            for method in ("tolist", "numpy"):  # these read memory without an aten op
                patch.setattr(torch.Tensor, method, refuse)
            yield

    return refusing


@pytest.mark.parametrize("overrides", [
    ["model.cell=lstm"],
    ["model.cell=gru", "regularization.dropout_kind=variational", "regularization.hidden_dropout=0.3",
     "regularization.output_dropout=0.3", "regularization.recurrent_dropout=0.3",
     "regularization.embedding_dropout=0.1", "regularization.ar=1.0", "regularization.tar=1.0"],
    ["model.cell=rnn_tanh", "regularization.weight_drop=0.3", "model.skip=residual",
     "regularization.recurrent_dropout=0.2", "regularization.recurrent_dropout_kind=naive"],
    ["model.cell=lstm", "model.output=sampled"],
    ["model.cell=lstm", "model.output=nce"],
    pytest.param(["model.cell=lstm", "model.output=adaptive", "output.div_value=2"], marks=pytest.mark.xfail(
        strict=True, raises=_HostRead, reason="torch's AdaptiveLogSoftmaxWithLoss picks each cluster's rows with "
        "nonzero(): a sync per cluster and step, documented in docs/performance.md")),
])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_training_step_never_reads_the_device(overrides, optimizer, no_host_reads):
    """Issue 12's rule: no host synchronisation in the training step (on CPU the same code would sync on CUDA)."""
    from rnnlab.config import load_config

    config = load_config(overrides=[*overrides, "model.hidden_size=8", "model.embedding_dim=8", "model.num_layers=2",
                                    "output.num_samples=4", "output.cutoffs=[4, 8]", f"train.optimizer={optimizer}"])
    torch.manual_seed(0)
    model = RNNLanguageModel.from_config(config.model, 12, config.regularization, output_settings=config.output,
                                         counts=list(range(12, 0, -1)))
    optimizer = make_optimizer(model.parameters(), config.train)
    inputs, targets = torch.randint(12, (T, B)), torch.randint(12, (T, B))
    state = None
    for _ in range(2):
        with no_host_reads():
            result = train_step(model, optimizer, inputs, targets, state, clip_norm=0.5, loss_average="tokens")
        state = result.state
    assert bool(result.applied)
