import math
import re

import pytest
import torch

from rnnlab.config import Config, TrainConfig, load_config
from rnnlab.errors import CheckpointError, ConfigError
from rnnlab.training.checkpoint import BEST, LATEST, load_checkpoint, model_from_checkpoint, save_checkpoint
from rnnlab.training.metrics import read_metrics
from rnnlab.training.optim import LrSchedule
from rnnlab.training.trainer import Observer, Trainer, TrainingDiverged

from .conftest import TINY_MODEL


def _config(corpus_dir, *extra: str) -> Config:
    return load_config(overrides=[f"data.path={corpus_dir}", *TINY_MODEL, *extra])


def _train_losses(run_dir):
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "train"]


def test_metrics_records_have_the_documented_fields(tiny_corpus_dir, tmp_path):
    result = Trainer(_config(tiny_corpus_dir, "train.epochs=2"), tmp_path / "run").fit()
    records = read_metrics(result.metrics)
    train = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    assert train and set(train[0]) == {"event", "epoch", "step", "loss", "ppl", "lr", "grad_norm", "tokens_per_s"}
    assert set(evals[0]) == {"event", "split", "epoch", "step", "loss", "ppl", "tokens", "words", "word_ppl", "chars",
                             "char_ppl", "bpc"}
    for record in evals:  # at the word level a token is a word (<eos> included): the same perplexity
        assert record["words"] == record["tokens"] and record["word_ppl"] == pytest.approx(record["ppl"])
        split = (tiny_corpus_dir / f"{record['split']}.txt").read_text()
        assert record["chars"] == len(split)
        assert record["bpc"] == pytest.approx(record["loss"] * record["tokens"] / len(split) / math.log(2))
    assert [r["split"] for r in evals] == ["valid", "valid", "test"]
    assert [r["epoch"] for r in evals] == [1, 2, 2]
    assert all(math.isclose(r["ppl"], math.exp(r["loss"])) for r in train + evals)
    assert result.stopped_by == "epochs" and result.test["ppl"] == evals[-1]["ppl"]
    assert (tmp_path / "run" / "config.toml").is_file()
    assert load_config(config_file=tmp_path / "run" / "config.toml") == _config(tiny_corpus_dir, "train.epochs=2")


@pytest.mark.parametrize("model", [[], ["model.num_layers=3", "model.dilations=[1, 3, 2]", "model.skip=residual"],
                                   ["model.skip=dense", "model.last_layer_size=5"]],
                         ids=["plain", "dilated-residual", "dense-narrow-top"])
def test_resumed_run_matches_an_uninterrupted_run(tiny_corpus_dir, tmp_path, model):
    # Dropout on, so the RNG state in the checkpoint matters; stop mid-epoch, so the carried
    # recurrent state and the window position matter (a dilated layer carries d steps of it).
    config = _config(tiny_corpus_dir, "train.epochs=3", "regularization.hidden_dropout=0.3", "train.schedule=plateau",
                     "train.log_every=3", *model)
    whole = Trainer(config, tmp_path / "whole").fit()
    windows = Trainer(config, tmp_path / "probe").windows_per_epoch
    stop_at = windows + windows // 2
    assert 0 < stop_at % windows, "the stop must fall inside an epoch"

    first = Trainer(config.with_overrides({"train.max_steps": stop_at}), tmp_path / "split").fit()
    assert first.stopped_by == "max_steps" and first.steps == stop_at
    resumed = Trainer(config, tmp_path / "split", resume=True).fit()

    assert resumed.steps == whole.steps
    assert _train_losses(tmp_path / "split") == _train_losses(tmp_path / "whole")
    assert len(_train_losses(tmp_path / "whole")) == whole.steps // 3

    def epoch_end_evals(run):  # the stopped run also validated at its stop: compare the epoch ends
        records = read_metrics(run / "metrics.jsonl")
        return [(r["step"], r["split"], r["loss"]) for r in records
                if r["event"] == "eval" and (r["step"] % windows == 0 or r["split"] == "test")]

    assert epoch_end_evals(tmp_path / "split") == epoch_end_evals(tmp_path / "whole")
    a = load_checkpoint(tmp_path / "whole" / LATEST)["model"]
    b = load_checkpoint(tmp_path / "split" / LATEST)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert resumed.test["ppl"] == whole.test["ppl"]


def test_resume_refuses_a_changed_model(tiny_corpus_dir, tmp_path):
    config = _config(tiny_corpus_dir, "train.max_steps=3")
    Trainer(config, tmp_path / "run").fit()
    with pytest.raises(CheckpointError, match="another config"):
        Trainer(config.with_overrides({"model.hidden_size": 9, "model.embedding_dim": 9}), tmp_path / "run",
                resume=True)


def test_a_stop_request_saves_latest_and_the_run_resumes(tiny_corpus_dir, tmp_path):
    class StopAtThree(Observer):
        def __init__(self):
            self.trainer = None

        def on_step(self, step, tokens):
            if step == 3:
                self.trainer.request_stop()

    stopper = StopAtThree()
    trainer = Trainer(_config(tiny_corpus_dir, "train.epochs=1"), tmp_path / "run", observers=(stopper,))
    stopper.trainer = trainer
    result = trainer.fit()
    assert result.stopped_by == "interrupted" and result.test is None
    assert load_checkpoint(tmp_path / "run" / LATEST)["progress"]["step"] == 3
    resumed = Trainer(_config(tiny_corpus_dir, "train.epochs=1"), tmp_path / "run", resume=True).fit()
    assert resumed.stopped_by == "epochs" and resumed.steps == trainer.windows_per_epoch


def test_divergence_is_reported_and_keeps_earlier_checkpoints(tiny_corpus_dir, tmp_path):
    run = tmp_path / "run"
    Trainer(_config(tiny_corpus_dir, "train.epochs=1"), run).fit()
    before = {name: (run / name).read_bytes() for name in (BEST, LATEST)}

    class Sabotage(Observer):  # an infinite learning rate from the resumed epoch on: NaN weights
        def __init__(self):
            self.trainer = None

        def on_start(self, total_steps, done_steps):
            for group in self.trainer.optimizer.param_groups:
                group["lr"] = float("inf")

    sabotage = Sabotage()
    trainer = Trainer(_config(tiny_corpus_dir, "train.epochs=3", "train.log_every=1000"), run, resume=True,
                      observers=(sabotage,))
    sabotage.trainer = trainer
    # The first step's infinite update makes the weights NaN: every later step is skipped. The skips are read at
    # the epoch's end here (no train record, no periodic save before it), so the run names all of them.
    with pytest.raises(TrainingDiverged, match=r"training diverged: (\d+) steps in a row had a non-finite loss") as err:
        trainer.fit()
    assert int(re.search(r"(\d+) steps in a row", str(err.value)).group(1)) >= 10
    assert {name: (run / name).read_bytes() for name in (BEST, LATEST)} == before


def test_a_stop_never_saves_a_diverged_model(tiny_corpus_dir, tmp_path):
    class Sabotage(Observer):  # NaN weights at step 2, then a stop request (Ctrl-C) at step 3
        def __init__(self):
            self.trainer = None

        def on_step(self, step, tokens):
            if step == 2:
                for param in self.trainer.model.parameters():
                    param.data.fill_(float("nan"))
            if step == 3:
                self.trainer.request_stop()

    sabotage = Sabotage()
    trainer = Trainer(_config(tiny_corpus_dir, "train.log_every=1000"), tmp_path / "run", observers=(sabotage,))
    sabotage.trainer = trainer
    with pytest.raises(TrainingDiverged, match="the weights are not finite"):
        trainer.fit()
    assert not (tmp_path / "run" / LATEST).exists()


def test_checkpoint_is_plain_data_that_rebuilds_the_model(tiny_corpus_dir, tmp_path):
    Trainer(_config(tiny_corpus_dir, "train.max_steps=2", "model.tie_weights=true"), tmp_path / "run").fit()
    payload = torch.load(tmp_path / "run" / BEST, weights_only=True)
    assert {"format_version", "config", "vocab", "model", "optimizer", "schedule", "progress", "ranks",
            "world_size"} <= set(payload)
    assert payload["world_size"] == 1 and set(payload["ranks"][0]) == {"rng", "carried_state"}
    model, config, vocab = model_from_checkpoint(payload)
    assert model.embedding.weight is model.output.weight  # tying survives the round trip
    assert len(vocab) == model.vocab_size and config.model.tie_weights


def test_damaged_or_foreign_checkpoints_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="does not load"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="no format_version"):
        load_checkpoint(foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format_version": 1, "model": torch.nn.Linear(2, 2)}, pickled)  # a whole module, not plain data
    with pytest.raises(CheckpointError, match="pickled objects"):
        load_checkpoint(pickled)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_failed_checkpoint_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"config": {}, "vocab": {}, "model": {"w": torch.ones(3)}})
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"config": {}, "vocab": {}, "model": Unpicklable()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"], "no temporary file may be left behind"


def test_zaremba_schedule_halves_after_the_full_lr_epochs():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = LrSchedule(optimizer, TrainConfig(schedule="zaremba", full_lr_epochs=4, lr_decay=0.5))
    lrs = []
    for _ in range(7):
        lrs.append(schedule.lr)
        optimizer.step()
        schedule.epoch_end(valid_loss=1.0)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]


def test_plateau_schedule_divides_when_validation_does_not_improve():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=20.0)
    schedule = LrSchedule(optimizer, TrainConfig(schedule="plateau", plateau_factor=4.0))
    lrs = []
    for loss in (5.0, 4.0, 4.5, 3.0, 3.0):
        optimizer.step()
        schedule.epoch_end(loss)
        lrs.append(schedule.lr)
    assert lrs == [20.0, 20.0, 5.0, 5.0, 1.25]


def test_tensorboard_logging_writes_event_files(tiny_corpus_dir, tmp_path):
    Trainer(_config(tiny_corpus_dir, "train.max_steps=3", "train.tensorboard=true"), tmp_path / "run").fit()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_unavailable_cuda_is_a_config_error(tiny_corpus_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path needs a machine without it")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        Trainer(_config(tiny_corpus_dir, "train.device=cuda"), tmp_path / "run")


def test_variable_bptt_windows_cover_every_row_once_and_repeat_per_epoch(tiny_corpus_dir):
    from rnnlab.training.workloads import build_workload

    config = _config(tiny_corpus_dir, "train.variable_bptt=true", "train.bptt=7")
    workload = build_workload(config, torch.device("cpu"))
    rows = workload.train_data.size(0)
    for epoch in (1, 2):
        windows = [workload.window(epoch, i) for i in range(workload.windows_in_epoch(epoch))]
        inputs = torch.cat([w[0] for w in windows])
        assert torch.equal(inputs, workload.train_data[: rows - 1])  # every input row exactly once, in order
        assert torch.equal(torch.cat([w[1] for w in windows]), workload.train_data[1:])
        assert all(len(w[0]) >= 5 for w in windows[:-1])
    lengths = lambda epoch: [len(workload.window(epoch, i)[0]) for i in range(workload.windows_in_epoch(epoch))]  # noqa: E731
    assert lengths(1) != lengths(2) and len(set(lengths(1))) > 1  # drawn per epoch...
    assert lengths(1) == lengths(1)  # ...from the seed alone


def test_variable_bptt_scales_the_step_by_the_window_length():
    from rnnlab.training.optim import scaled_lr

    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=0.5)
    with scaled_lr(optimizer, 14 / 7):
        assert optimizer.param_groups[0]["lr"] == 1.0
        param.grad = torch.ones(2)
        optimizer.step()
    assert optimizer.param_groups[0]["lr"] == 0.5
    assert torch.equal(param.detach(), torch.full((2,), -1.0))


def test_nt_asgd_starts_averaging_when_validation_stops_improving(tiny_corpus_dir, tmp_path):
    """AWD-LSTM's rule: the new loss against the best of the earlier losses but the last ``nonmono``."""
    config = _config(tiny_corpus_dir, "train.averaging=nonmono", "train.nonmono=2")
    trainer = Trainer(config, tmp_path / "run")
    for loss in (5.0, 3.0, 4.0, 3.5):  # 3.5 against min(5.0) (3.0 and 4.0 are the last two): not worse
        trainer._maybe_start_averaging(loss)
    assert trainer.averaged is None
    trainer._maybe_start_averaging(3.2)  # against min(5.0, 3.0) = 3.0: worse, start averaging
    assert trainer.averaged is not None and trainer.progress.averaging_from == trainer.progress.step
    assert trainer.progress.epoch_valid_losses == [5.0, 3.0, 4.0, 3.5, 3.2]
    before = [p.detach().clone() for p in trainer.model.parameters()]
    for shift in (1.0, 2.0):  # the weights after two steps: before + 1, then before + 3
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.add_(shift)
        trainer.averaged.update_parameters(trainer.model)
    for avg, old in zip(trainer.evaluated_model.parameters(), before):
        torch.testing.assert_close(avg, old + 2.0)  # validation sees their mean
    plain = Trainer(_config(tiny_corpus_dir), tmp_path / "plain")
    for loss in (5.0, 4.0, 3.0, 9.0, 9.0, 9.0, 9.0):
        plain._maybe_start_averaging(loss)
    assert plain.averaged is None and plain.evaluated_model is plain.model


def test_variable_bptt_scales_the_lr_only_for_a_per_token_loss(tiny_corpus_dir, tmp_path, monkeypatch):
    from rnnlab.training import trainer as trainer_module

    seen = []
    real = trainer_module.scaled_lr

    def spy(optimizer, scale):
        seen.append(scale)
        return real(optimizer, scale)

    monkeypatch.setattr(trainer_module, "scaled_lr", spy)
    for average, scaled in (("tokens", True), ("sequences", False)):
        seen.clear()
        config = _config(tiny_corpus_dir, "train.variable_bptt=true", "train.bptt=7", "train.max_steps=6",
                         f"train.loss_average={average}")
        trainer = Trainer(config, tmp_path / average)
        trainer.fit()
        lengths = [len(trainer.workload.window(1, i)[0]) / 7 for i in range(6)]
        assert seen == (lengths if scaled else [1.0] * 6)


def test_token_stream_options_are_refused_for_tasks():
    for key in ("train.variable_bptt=true", "regularization.embedding_dropout=0.1"):
        with pytest.raises(ConfigError, match="task"):
            load_config("adding-lstm", overrides=[key])
