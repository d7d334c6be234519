"""The GPU path's settings, checked where no GPU is: train.cuda_graphs' static-buffer plumbing (a replay that
reruns the captured step, ``Rerun``, must equal the plain step bit for bit), train.precision = bf16's float32
loss and gradients (CPU autocast stands in for CUDA's), and the one-line refusals off CUDA."""

import pytest
import torch
from torch.testing import assert_close

from rnnlab.cli import main
from rnnlab.config import load_config
from rnnlab.errors import ConfigError
from rnnlab.models import RNNLanguageModel
from rnnlab.training.checkpoint import LATEST, load_checkpoint
from rnnlab.training.graphs import CapturedStep, Rerun
from rnnlab.training.loop import train_step
from rnnlab.training.metrics import read_metrics
from rnnlab.training.optim import make_optimizer
from rnnlab.training.trainer import Trainer

from .conftest import TINY_MODEL

V, T, B = 12, 5, 3


def _model_and_optimizer(optimizer: str, seed: int = 0):
    config = load_config(overrides=["model.hidden_size=8", "model.embedding_dim=8", f"train.optimizer={optimizer}",
                                    "train.momentum=0.9" if optimizer == "sgd" else "train.lr=0.01",
                                    "regularization.hidden_dropout=0.2"])
    torch.manual_seed(seed)
    model = RNNLanguageModel.from_config(config.model, V, config.regularization)
    return model, make_optimizer(model.parameters(), config.train)


def _windows():
    """Full windows, an epoch's short last one, a fresh (None) state, a learning-rate change, a non-finite step."""
    torch.manual_seed(1)
    plan = [(T, False, 1.0, False)] * 5 + [(2, False, 1.0, False), (T, True, 1.0, False), (T, False, 0.5, False),
                                          (T, False, 0.5, True), (T, False, 0.5, False)]
    for length, fresh, lr_factor, poison in plan:
        yield torch.randint(V, (length, B)), torch.randint(V, (length, B)), fresh, lr_factor, poison


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_replayed_step_equals_the_plain_step(optimizer):
    """Bit for bit with SGD. Fused Adam with a tensor lr (as captured) computes its step size in float32, not
    double: equal to rounding (a 1-ulp difference from the fourth step on)."""
    same = (lambda a, b: assert_close(a, b, rtol=0, atol=0)) if optimizer == "sgd" else assert_close
    plain_model, plain_opt = _model_and_optimizer(optimizer)
    model, opt = _model_and_optimizer(optimizer)
    captured = CapturedStep(model, opt, clip_norm=0.5, loss_average="tokens", graphs=Rerun(), warmup=2)
    lr0 = opt.param_groups[0]["lr"]
    plain_state = state = None
    for inputs, targets, fresh, lr_factor, poison in _windows():
        if fresh:
            plain_state = state = None
        for o in (plain_opt, opt):
            o.param_groups[0]["lr"] = lr0 * lr_factor
        hooks = [m.rnn.layer_weights(0).weight_hh.register_hook(lambda g: g * float("nan"))
                 for m in (plain_model, model)] if poison else []
        torch.manual_seed(7)  # the same dropout masks on both sides
        expected = train_step(plain_model, plain_opt, inputs, targets, plain_state, clip_norm=0.5,
                              loss_average="tokens")
        torch.manual_seed(7)
        got = captured(inputs, targets, state)
        for hook in hooks:
            hook.remove()
        same(got.loss, expected.loss)
        if poison:  # NaN on both sides
            assert got.grad_norm.isnan() and expected.grad_norm.isnan()
        else:
            same(got.grad_norm, expected.grad_norm)
        assert bool(got.applied) == bool(expected.applied) == (not poison)
        for a, b in zip(got.state, expected.state):
            same(a, b)
        plain_state, state = expected.state, got.state
        assert isinstance(opt.param_groups[0]["lr"], float), "the param groups keep a float lr"
    assert captured.replays == 7 and captured.eager_steps == 3  # 2 warm-up steps and the short window
    for a, b in zip(model.state_dict().values(), plain_model.state_dict().values()):
        same(a, b)
    for p, q in zip(model.parameters(), plain_model.parameters()):
        for key, value in plain_opt.state[q].items():
            same(opt.state[p][key], value)


def test_a_trainer_on_replayed_steps_trains_and_saves_as_the_plain_one(tiny_corpus_dir, tmp_path):
    """Two epochs (each with a short last window and a fresh state), a zaremba lr decay, a checkpoint."""
    config = load_config(overrides=[f"data.path={tiny_corpus_dir}", *TINY_MODEL, "train.epochs=2",
                                    "train.full_lr_epochs=1", "train.bptt=8"])  # 189 rows: 23 windows of 8 and one of 5
    plain = Trainer(config, tmp_path / "plain")
    plain.fit()
    trainer = Trainer(config, tmp_path / "captured")
    trainer._step = CapturedStep(trainer.model, trainer.optimizer, clip_norm=config.train.clip_norm,
                                 loss_average=config.train.loss_average, graphs=Rerun(), after=trainer._account)
    # A graph replays fixed addresses: the sums the captured step adds to must be updated in place, never rebound
    # (the rerun stand-in would not notice a rebinding; this does).
    sums = lambda t: [x.data_ptr() for x in (t._loss_sum, t._token_sum, t._last_grad_norm, t._skips.counts,  # noqa: E731
                                             t._skips.run_faults, t._skips.longest_faults)]
    before = sums(trainer)
    trainer.fit()
    assert sums(trainer) == before
    assert trainer._step.replays > 0 and trainer._step.eager_steps == 3 + 2  # warm-up, two short windows
    ours, theirs = (load_checkpoint(run / LATEST) for run in (tmp_path / "captured", tmp_path / "plain"))
    assert ours["progress"] == theirs["progress"] and ours["accumulators"] == theirs["accumulators"]
    for name, value in theirs["model"].items():
        assert torch.equal(ours["model"][name], value), name
    records = [[(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"]
               for run in (tmp_path / "captured", tmp_path / "plain")]
    assert records[0] == records[1] and len(records[0]) == 48  # log_every = 1: every step's loss


def test_the_capture_waits_for_a_full_length_window():
    model, opt = _model_and_optimizer("sgd")
    captured = CapturedStep(model, opt, clip_norm=0.5, loss_average="tokens", graphs=Rerun(), warmup=1)
    state = None
    for length in (T, 2, T, T):
        state = captured(torch.randint(V, (length, B)), torch.randint(V, (length, B)), state).state
    assert captured._inputs.size(0) == T and captured.eager_steps == 2 and captured.replays == 2


def test_bf16_autocast_keeps_the_loss_gradients_and_log_probs_in_float32():
    """CPU autocast stands in for CUDA's (an RNN-tanh model: this CPU's oneDNN has no bf16 LSTM)."""
    config = load_config(overrides=["model.cell=rnn_tanh", "model.hidden_size=16", "model.embedding_dim=16"])
    torch.manual_seed(0)
    model = RNNLanguageModel.from_config(config.model, 50)
    twin = RNNLanguageModel.from_config(config.model, 50)
    twin.load_state_dict(model.state_dict())
    inputs, targets = torch.randint(50, (20, 8)), torch.randint(50, (20, 8))
    fp32 = train_step(twin, make_optimizer(twin.parameters(), config.train), inputs, targets, None, clip_norm=0.0,
                      loss_average="tokens")
    bf16 = train_step(model, make_optimizer(model.parameters(), config.train), inputs, targets, None, clip_norm=0.0,
                      loss_average="tokens", autocast=torch.bfloat16)
    assert bf16.loss.dtype == torch.float32 and all(p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(s.dtype == torch.float32 for s in (bf16.state if isinstance(bf16.state, tuple) else (bf16.state,)))
    assert abs(bf16.loss.item() / fp32.loss.item() - 1) < 0.01
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden, _ = model.features(inputs)
        assert model.output.log_probs(hidden.reshape(-1, 16)).dtype == torch.float32


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.cuda_graphs=true", "train.variable_bptt=true"], "replays one window shape"),
    (["train.cuda_graphs=true", "model.output=sampled"], "cannot capture model.output = sampled"),
    (["train.cuda_graphs=true", "task.name=adding"], "the adding task trains uncaptured"),
])
def test_settings_the_graph_cannot_capture_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


@pytest.mark.parametrize(("setting", "message"), [
    ("train.cuda_graphs=true", "train.cuda_graphs needs a CUDA device; this run is on cpu"),
    ("train.precision=bf16", "train.precision = bf16 needs a CUDA device with bfloat16"),
])
def test_gpu_settings_off_cuda_exit_2_with_one_line(setting, message, tiny_corpus_dir, tmp_path, capsys):
    code = main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(tmp_path / "run"), "--quiet",
                 "--set", "train.device=cpu", "--set", setting])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
