import math

import pytest
import torch
import torch.nn.functional as F

from rnnlab.config import ModelConfig, load_config
from rnnlab.data.synthetic import CopyTask, make_task, seeded_generator
from rnnlab.models import RNNLanguageModel, SequenceModel
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer

from .conftest import TINY_MODEL


def test_adding_targets_are_the_sum_of_the_marked_values_and_the_baseline_is_one_sixth():
    task = make_task("adding", 40)
    inputs, targets = task.sample(20_000, seeded_generator(5))
    assert inputs.shape == (40, 20_000, 2)
    marks = inputs[:, :, 1]
    assert torch.all(marks.sum(0) == 2)
    assert torch.all(marks[:20].sum(0) == 1) and torch.all(marks[20:].sum(0) == 1)
    torch.testing.assert_close(targets, (inputs[:, :, 0] * marks).sum(0))
    always_one = torch.ones(40, 20_000, 1)
    assert task.evaluate(always_one, targets)["mse"] == pytest.approx(1 / 6, abs=0.005)
    assert task.baseline["mse"] == pytest.approx(0.1667, abs=1e-4)


def test_copy_baseline_is_blanks_then_uniform_guesses():
    T = 30
    task = CopyTask(T)
    inputs, targets = task.sample(64, seeded_generator(1))
    assert inputs.shape == targets.shape == (T + 20, 64)
    torch.testing.assert_close(targets[-10:], inputs[:10])
    assert torch.all(inputs[T + 9] == task.DELIMITER)
    # The memoryless strategy: certain blanks for T + 10 steps, then uniform over the 8 symbols.
    logits = torch.full((T + 20, 64, 9), -1e9)
    logits[: T + 10, :, 0] = 0.0
    logits[T + 10 :, :, 1:] = 0.0
    metrics = task.evaluate(logits, targets)
    assert metrics["cross_entropy"] == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-6)
    assert metrics["baseline_cross_entropy"] == pytest.approx(metrics["cross_entropy"], rel=1e-6)


def test_temporal_order_classes_follow_the_two_symbols():
    task = make_task("temporal_order", 50)
    inputs, targets = task.sample(2000, seeded_generator(2))
    for b in range(50):
        symbols = [int(s) for s in inputs[:, b] if s >= 4]
        assert len(symbols) == 2
        assert targets[b] == 2 * (symbols[0] - 4) + (symbols[1] - 4)
    counts = torch.bincount(targets, minlength=4).float() / 2000
    assert torch.all((counts - 0.25).abs() < 0.04)
    uniform = torch.zeros(50, 2000, 4)
    assert task.evaluate(uniform, targets)["cross_entropy"] == pytest.approx(math.log(4))


def test_tasks_are_reproducible_from_seeds():
    task = make_task("copy", 10)
    a = task.sample(4, seeded_generator(1, 0, 2, 3))
    b = task.sample(4, seeded_generator(1, 0, 2, 3))
    c = task.sample(4, seeded_generator(1, 0, 2, 4))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", ["adding", "copy", "temporal_order"])
def test_sequence_model_loss_matches_the_tasks_definition(name):
    task = make_task(name, 12)
    model = SequenceModel.from_config(ModelConfig(cell="gru", num_layers=1, hidden_size=8, embedding_dim=4), task)
    inputs, targets = task.sample(5, seeded_generator(0))
    out = model(inputs, targets)
    predictions = model.predict(inputs)
    if name == "adding":
        expected = F.mse_loss(predictions[-1, :, 0], targets, reduction="sum")
    elif name == "copy":
        expected = F.cross_entropy(predictions.reshape(-1, 9), targets.reshape(-1), reduction="sum")
    else:
        expected = F.cross_entropy(predictions[-1], targets, reduction="sum")
    torch.testing.assert_close(out.loss, expected)
    assert model.step_costs(model.features(inputs)[0], targets).shape == (task.steps,)


@pytest.mark.parametrize("kind", ["orthogonal", "identity", "default"])
def test_recurrent_init_and_scale(kind):
    config = ModelConfig(cell="lstm", hidden_size=8, embedding_dim=8, recurrent_init=kind, recurrent_scale=1.7)
    model = RNNLanguageModel.from_config(config, 11)
    for block in model.rnn.layer_weights(1).weight_hh.detach().chunk(4, dim=0):
        assert float(torch.linalg.matrix_norm(block, 2)) == pytest.approx(1.7, rel=1e-5)
        if kind in ("orthogonal", "identity"):  # scaled orthogonal: W^T W = 1.7^2 I
            torch.testing.assert_close(block.t() @ block, 1.7**2 * torch.eye(8), atol=1e-5, rtol=0)
        if kind == "identity":
            torch.testing.assert_close(block, 1.7 * torch.eye(8))


def test_a_task_trains_end_to_end_and_reports_its_baseline(tmp_path):
    config = load_config("adding-lstm", overrides=["task.length=12", "task.steps_per_epoch=5", "task.eval_sequences=40",
                                                    "model.hidden_size=8", "train.epochs=2", "train.log_every=1"])
    result = Trainer(config, tmp_path / "run").fit()
    records = read_metrics(result.metrics)
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["split"] for r in evals] == ["valid", "valid", "test"]
    assert all(r["baseline_mse"] == pytest.approx(1 / 6) and "mse" in r and r["sequences"] == 40 for r in evals)
    assert "not learned: 0.1667" in result.summary


def test_a_task_run_resumes_exactly(tmp_path):
    config = load_config("copy-lstm", overrides=["task.length=6", "task.steps_per_epoch=4", "task.eval_sequences=20",
                                                 "model.hidden_size=8", "train.epochs=2", "train.log_every=1"])
    Trainer(config, tmp_path / "whole").fit()
    Trainer(config.with_overrides({"train.max_steps": 6}), tmp_path / "split").fit()
    Trainer(config, tmp_path / "split", resume=True).fit()

    def losses(run):
        return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"]

    assert losses(tmp_path / "split") == losses(tmp_path / "whole")


def test_training_logs_diagnostics_records(tiny_corpus_dir, tmp_path):
    config = load_config(overrides=[f"data.path={tiny_corpus_dir}", *TINY_MODEL, "train.max_steps=6",
                                    "diagnostics.every_steps=3", "diagnostics.batch=2", "train.tensorboard=true"])
    result = Trainer(config, tmp_path / "run").fit()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    records = [r for r in read_metrics(result.metrics) if r["event"] == "diagnostics"]
    assert [(r["step"], r["layer"]) for r in records] == [(3, 0), (3, 1), (6, 0), (6, 1)]
    for r in records:
        assert {"grad_log_gain_per_step", "grad_ratio", "sigma_max", "spectral_radius", "saturated_fraction",
                "verdict", "forget_gate_mean"} <= set(r)
        assert r["verdict"] in ("vanishing", "exploding", "healthy", "undetermined")
