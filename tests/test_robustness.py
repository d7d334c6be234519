"""Never lose work: periodic checkpoints, signals, kills, non-finite steps, a full disk, strict JSON, and the
small failures that used to trace back. Each asserts the exit code, the message and the files left."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from rnnlab.cli import main
from rnnlab.config import load_config
from rnnlab.data.corpus import load_corpus
from rnnlab.generation import generate, generate_stream
from rnnlab.training.checkpoint import BEST, LATEST, load_checkpoint, model_from_checkpoint
from rnnlab.training.loop import SkippedSteps, StepResult, train_step
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer, TrainingDiverged

from .conftest import TINY_MODEL


def _strict(text):
    """json.loads that refuses NaN / Infinity, as JSON.parse and jq do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def _sets(*items):
    return [arg for item in items for arg in ("--set", item)]


def _config(corpus, *extra):
    return load_config(overrides=[f"data.path={corpus}", *TINY_MODEL, *extra])


def _cli(*args, timeout=120, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "rnnlab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **popen)


# ---------------------------------------------------------------- non-finite steps


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "plain"])
def test_a_non_finite_gradient_skips_the_update_and_leaves_the_optimizer_alone(optimizer, tiny_corpus_dir):
    """The fused optimizers skip on the device (found_inf); "plain" (foreach SGD, no such hook) reads the flag."""
    kind = "sgd" if optimizer == "plain" else optimizer
    config = _config(tiny_corpus_dir, f"train.optimizer={kind}", "train.momentum=0.9")
    trainer = Trainer(config, tiny_corpus_dir.parent / "run")
    model, opt = trainer.model, trainer.optimizer
    if optimizer == "plain":
        opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, foreach=True)
    inputs, targets = trainer.workload.window(1, 0)
    first = train_step(model, opt, inputs, targets, None, clip_norm=5.0, loss_average="sequences")  # state exists
    assert bool(first.applied)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    saved = {id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    poisoned = model.rnn.layer_weights(0).weight_hh
    handle = poisoned.register_hook(lambda grad: grad * float("inf"))
    result = train_step(model, opt, inputs, targets, first.state, clip_norm=5.0, loss_average="sequences")
    handle.remove()
    assert not bool(result.applied)
    assert [name for name in result.faults() if "weight_hh" in name] == [
        name for name, p in model.named_parameters() if p is poisoned]
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    for p in model.parameters():
        for key, value in saved[id(p)].items():
            assert torch.equal(opt.state[p][key], value), key
    for carried, incoming in zip(result.state, first.state):  # the window's incoming (h, c) goes on
        assert torch.equal(carried, incoming)


def test_a_skipped_first_step_creates_no_optimizer_state_that_moves(tiny_corpus_dir):
    """Adam's lazily created state on a skipped first step: the step count stays 0, the weights stay."""
    trainer = Trainer(_config(tiny_corpus_dir, "train.optimizer=adam"), tiny_corpus_dir.parent / "run")
    model = trainer.model
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, targets = trainer.workload.window(1, 0)
    handle = model.rnn.layer_weights(0).weight_ih.register_hook(lambda grad: grad * float("nan"))
    result = train_step(model, trainer.optimizer, inputs, targets, None, clip_norm=0.0, loss_average="tokens")
    handle.remove()
    assert not bool(result.applied)
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert all(float(state["step"]) == 0 for state in trainer.optimizer.state.values())
    assert all(not s.any() for s in result.state)  # no incoming state: the zero state goes on


def test_a_skipped_first_step_leaves_sgd_momentum_at_zero(tiny_corpus_dir):
    """Fused SGD creates missing momentum buffers uninitialised and skips their write on a skipped step: they are
    made zero up front, so the next good step is exactly a first step."""
    config = _config(tiny_corpus_dir, "train.optimizer=sgd", "train.momentum=0.9")
    trainer, twin = (Trainer(config, tiny_corpus_dir.parent / name) for name in ("run", "twin"))
    inputs, targets = trainer.workload.window(1, 0)
    handle = trainer.model.rnn.layer_weights(0).weight_ih.register_hook(lambda grad: grad * float("nan"))
    skipped = train_step(trainer.model, trainer.optimizer, inputs, targets, None, clip_norm=5.0,
                         loss_average="sequences")
    handle.remove()
    assert not bool(skipped.applied)
    assert all(not state["momentum_buffer"].any() for state in trainer.optimizer.state.values())
    for model, optimizer in ((trainer.model, trainer.optimizer), (twin.model, twin.optimizer)):
        train_step(model, optimizer, inputs, targets, None, clip_norm=5.0, loss_average="sequences")
    for name, value in twin.model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], value), name


def test_sgd_momentum_with_a_cluster_whose_first_gradient_comes_late(tiny_corpus_dir):
    """An adaptive-softmax tail cluster gets no gradient while no target falls in it; its first one comes later."""
    config = _config(tiny_corpus_dir, "train.optimizer=sgd", "train.momentum=0.9", "model.output=adaptive",
                     "output.cutoffs=[4, 8]", "output.div_value=2")
    trainer = Trainer(config, tiny_corpus_dir.parent / "run")
    inputs, targets = trainer.workload.window(1, 0)
    head_only = targets.clamp(max=3)
    first = train_step(trainer.model, trainer.optimizer, inputs, head_only, None, clip_norm=5.0,
                       loss_average="sequences")
    assert any(p.grad is None for p in trainer.model.parameters()), "a tail cluster had no gradient"
    second = train_step(trainer.model, trainer.optimizer, inputs, targets, first.state, clip_norm=5.0,
                        loss_average="sequences")
    assert bool(first.applied) and bool(second.applied)


def test_skipped_step_counts_continue_across_a_resume():
    """SkippedSteps rebuilt from a checkpoint's progress goes on counting the same run, naming the same fault."""
    names = ("a", "b")
    skips = SkippedSteps(torch.device("cpu"), names, step=7, run=2, run_first=6, run_faults=["a"])

    def step(applied):
        skips.update(StepResult(torch.zeros(()), torch.zeros((), dtype=torch.long), torch.zeros(()), None,
                                torch.tensor(applied), torch.tensor([True, applied]), names))

    step(False)
    seen = skips.read()
    assert (seen.skipped, seen.run, seen.run_first, seen.longest, seen.longest_first) == (1, 3, 6, 3, 6)
    assert seen.faults == seen.run_faults == ["a"], "the run is named by its first step's fault (before the resume)"
    step(True)
    step(False)
    seen = skips.read()
    assert (seen.skipped, seen.run, seen.run_first, seen.longest, seen.longest_first) == (1, 1, 10, 1, 10)
    step(True)
    assert skips.read()[:4] == (0, 0, -1, [])


@pytest.mark.parametrize(("every", "records"), [("train.checkpoint_every_steps=1", [3, 4, 5]),
                                                ("train.log_every=5", [5])])
def test_consecutive_non_finite_steps_stop_the_run_with_one_line(every, records, tiny_corpus_dir, tmp_path):
    """Skips are counted on the device and read at saves and train records: every step here, or every 5th."""
    config = _config(tiny_corpus_dir, "train.max_nonfinite_steps=3", "train.epochs=5", "train.log_every=50",
                     "train.checkpoint_every_minutes=0", every)
    trainer = Trainer(config, tmp_path / "run")
    for _ in range(2):  # two good steps
        trainer._train_one_window()
    trainer._save(tmp_path / "run" / LATEST)
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.rnn.layer_weights(0).weight_ih.register_hook(lambda grad: grad * float("nan"))
    with pytest.raises(TrainingDiverged, match=r"3 steps in a row .*the first at step 3, in rnn\.\S*weight_ih"):
        for _ in range(5):
            trainer._train_one_window()
    assert trainer.progress.step == 5
    trainer.metrics.close()
    skipped = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "skipped"]
    assert [r["step"] for r in skipped] == records
    assert sum(r["skipped"] for r in skipped) == 3 and skipped[-1]["in_a_row"] == 3 and skipped[-1]["first"] == 3
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        _strict(line)
    saved = load_checkpoint(tmp_path / "run" / LATEST)
    assert saved["progress"]["step"] == (4 if len(records) == 3 else 2)  # the last save before the stop
    assert saved["progress"]["skipped_steps"] == saved["progress"]["nonfinite_run"] == saved["progress"]["step"] - 2
    for name, value in saved["model"].items():
        assert torch.equal(value, good[name]), name


# ---------------------------------------------------------------- checkpoints while training


def test_latest_is_written_every_n_steps_and_k_stamped_copies_are_kept(tiny_corpus_dir, tmp_path):
    config = _config(tiny_corpus_dir, "train.checkpoint_every_steps=2", "train.keep_checkpoints=2",
                     "train.max_steps=7", "train.epochs=5")
    run = tmp_path / "run"
    (run).mkdir()
    (run / ".latest.pt.abc123.tmp").write_bytes(b"left by a killed save")
    Trainer(config, run).fit()
    # saves at steps 2, 4, 6 and at the stop (7): the last two are kept
    assert sorted(p.name for p in run.glob("step-*.pt")) == ["step-00000006.pt", "step-00000007.pt"]
    assert not list(run.glob(".*.tmp")), "stale temporary files are removed"
    assert load_checkpoint(run / "step-00000006.pt")["progress"]["step"] == 6


def _train_args(corpus, run, *extra):
    return ["train", "--data", str(corpus), "--run-dir", str(run), "--quiet",
            *_sets(*TINY_MODEL, "train.epochs=40", "train.log_every=5", "train.checkpoint_every_steps=1",
                   "train.checkpoint_every_minutes=0", *extra)]


def _latest_weights(run):
    return load_checkpoint(run / LATEST)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same run, never stopped."""
    folder = tmp_path_factory.mktemp("reference")
    corpus = folder / "tiny"
    corpus.mkdir()
    rng = random.Random(0)
    words = "the cat sat on a mat and dog ran far".split()
    for split, lines in (("train", 120), ("valid", 20), ("test", 20)):
        text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(lines))
        (corpus / f"{split}.txt").write_text(text + "\n", encoding="utf-8")
    run = folder / "whole"
    done = subprocess.run([sys.executable, "-m", "rnnlab", *_train_args(corpus, run)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return corpus, run


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_at_the_next_step_and_the_run_resumes_exactly(signum, code, uninterrupted, tmp_path):
    corpus, whole = uninterrupted
    run = tmp_path / "run"
    process = _cli(*_train_args(corpus, run))
    deadline = time.monotonic() + 60
    while not (run / LATEST).is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert f"rnnlab train --resume {run}" in err and signal.Signals(signum).name in err
    stopped_at = load_checkpoint(run / LATEST)["progress"]["step"]
    assert 0 < stopped_at < load_checkpoint(whole / LATEST)["progress"]["step"]
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    for name, value in _latest_weights(whole).items():
        assert torch.equal(value, _latest_weights(run)[name]), name


@pytest.mark.slow
def test_kill_9_at_random_points_always_leaves_a_resumable_run(uninterrupted, tmp_path):
    """SIGKILL cannot be caught: whatever moment it strikes (saves happen every step, so some kills land inside
    one), a checkpoint at most one step old loads, and --resume ends with the uninterrupted run's weights."""
    corpus, whole = uninterrupted
    rng = random.Random(7)
    caught_inside_a_save = False
    for trial in range(4):
        run = tmp_path / f"run{trial}"
        process = _cli(*_train_args(corpus, run))
        deadline = time.monotonic() + 60
        while not (run / LATEST).is_file() and time.monotonic() < deadline:
            time.sleep(0.02)
        if trial == 3:  # aim for the inside of a save: kill as soon as a temporary checkpoint file appears
            deadline = time.monotonic() + 20
            while not list(run.glob(".latest.pt.*.tmp")) and time.monotonic() < deadline:
                time.sleep(0.0005)
        else:
            time.sleep(rng.uniform(0.0, 1.5))
        process.kill()
        process.communicate(timeout=30)
        caught_inside_a_save |= bool(list(run.glob(".*.tmp")))
        assert load_checkpoint(run / LATEST)["progress"]["step"] >= 1
        assert main(["train", "--resume", str(run), "--quiet"]) == 0
        assert not list(run.glob(".*.tmp")), "the half-written temporary file is removed"
        for name, value in _latest_weights(whole).items():
            assert torch.equal(value, _latest_weights(run)[name]), (trial, name)
    assert caught_inside_a_save, "one kill landed inside a save (a temporary file was left to clean up)"


def test_a_full_disk_is_one_line_and_keeps_the_old_checkpoints(tiny_corpus_dir, tmp_path, capsys, monkeypatch):
    import rnnlab.io

    run = tmp_path / "run"
    real_fdopen = os.fdopen
    saves = {"n": 0}

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        saves["n"] += 1
        return FullDisk(handle) if saves["n"] > 4 else handle  # config, first checkpoints fine; then the disk fills

    monkeypatch.setattr(rnnlab.io.os, "fdopen", fdopen)
    code = main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet",
                 *_sets(*TINY_MODEL, "train.checkpoint_every_steps=1", "train.max_steps=20")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "No space left on device" in err and str(run) in err, err
    assert load_checkpoint(run / LATEST)["progress"]["step"] >= 1, "the checkpoint written before is intact"
    assert not list(run.glob(".*.tmp")), "no temporary file is left behind"


# ---------------------------------------------------------------- run directories


def test_a_run_that_never_saved_can_be_trained_into_again(tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("version = 3\n")
    (run / "metrics.jsonl").write_text('{"event": "train", "step": 5}\n')
    assert main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet",
                 *_sets(*TINY_MODEL, "train.max_steps=2")]) == 0
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"] == [1, 2]
    (previous,) = run.glob("previous-*")
    assert (previous / "metrics.jsonl").read_text() == '{"event": "train", "step": 5}\n', "the old records are kept"
    # now it holds checkpoints: refused, unless --overwrite
    assert main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet",
                 *_sets(*TINY_MODEL, "train.max_steps=2")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (run / BEST).is_file()
    assert main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet", "--overwrite",
                 *_sets(*TINY_MODEL, "train.max_steps=3")]) == 0
    assert load_checkpoint(run / LATEST)["progress"]["step"] == 3


# ---------------------------------------------------------------- data and evaluation


def test_a_byte_order_mark_is_not_a_token(tmp_path):
    folder = tmp_path / "bom"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_bytes("\ufeffthe cat sat\nthe dog ran\n".encode())
    vocab = load_corpus(load_config(overrides=[f"data.path={folder}"]).data).vocab
    assert not any("\ufeff" in token for token in vocab.itos) and "the" in vocab.stoi


def test_eval_warns_on_out_of_vocabulary_text_and_resume_refuses_changed_text(tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet",
                 *_sets(*TINY_MODEL, "train.max_steps=2", "train.epochs=3")]) == 0
    other = tmp_path / "other"
    other.mkdir()
    for split in ("train", "valid", "test"):
        (other / f"{split}.txt").write_text("zebra quokka the cat\nyak ibex gnu sat\n" * 5)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--data", str(other), "--json"]) == 0
    captured = capsys.readouterr()
    report = _strict(captured.out)
    assert report["oov_rate"] == 0.5 and "warning" in captured.err and "vocabulary" in captured.err

    changed = tmp_path / "changed"
    changed.mkdir()
    for split in ("train", "valid", "test"):  # the same words (vocabulary), other text
        words = (tiny_corpus_dir / f"{split}.txt").read_text().split("\n")
        (changed / f"{split}.txt").write_text("\n".join(reversed(words)))
    assert main(["train", "--resume", str(run), "--data", str(changed), "--quiet"]) == 2
    assert "changed" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--data", str(changed), "--quiet",
                 "--set", "data.allow_changed=true"]) == 0


def test_every_json_output_is_strict(tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet",
                 *_sets(*TINY_MODEL, "train.max_steps=3", "diagnostics.every_steps=1", "model.cell=rnn_tanh",
                        "model.recurrent_scale=30")]) == 0
    for line in (run / "metrics.jsonl").read_text().splitlines():
        _strict(line)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--json"]) == 0
    _strict(capsys.readouterr().out)
    assert main(["diagnose", "--checkpoint", str(run), "--out", str(tmp_path / "d"), "--quiet"]) == 0
    _strict((tmp_path / "d" / "diagnostics.json").read_text())


# ---------------------------------------------------------------- generation and progress


def test_generation_streams_and_any_positive_temperature_works(tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet",
                 *_sets(*TINY_MODEL, "train.max_steps=5")]) == 0
    model, config, vocab = model_from_checkpoint(load_checkpoint(run))
    from rnnlab.data.tokenizers import get_tokenizer

    tokenizer = get_tokenizer("word")
    pieces = list(generate_stream(model, vocab, tokenizer, prompt="the", tokens=6, seed=1))
    assert len(pieces) >= 6 and "".join(pieces) == generate(model, vocab, tokenizer, prompt="the", tokens=6, seed=1)
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(run), "--tokens", "8", "--temperature", "1e-39", "--seed", "1"]) == 0
    tiny_t = capsys.readouterr().out
    assert main(["generate", "--checkpoint", str(run), "--tokens", "8", "--top-k", "1", "--seed", "2"]) == 0
    assert tiny_t == capsys.readouterr().out, "a vanishing temperature is greedy decoding"


def test_without_a_terminal_progress_is_plain_lines(tiny_corpus_dir, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(tmp_path / "run"),
                 *_sets(*TINY_MODEL, "train.max_steps=4", "train.log_every=2")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err, "no carriage-return frames in a log"
    assert "step 2/" in err and "step 4/" in err


def test_tokens_per_second_after_a_resume_counts_this_process_only(tiny_corpus_dir, tmp_path):
    config = _config(tiny_corpus_dir, "train.log_every=4", "train.epochs=3")
    Trainer(config.with_overrides({"train.max_steps": 2}), tmp_path / "run").fit()
    resumed = Trainer(config, tmp_path / "run", resume=True)
    assert resumed._log_tokens == 0 and float(resumed._token_sum) > 0, "the loss sums carry on, the rate does not"


def test_a_model_too_large_for_memory_is_one_line_naming_its_size(tmp_path, capsys):
    code = main(["train", "--run-dir", str(tmp_path / "huge"), "--quiet", "--set", "model.hidden_size=1000000"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "not enough memory" in err and "1000000" in err, err
    assert not (tmp_path / "huge").exists(), "nothing is left behind"


def test_a_kill_right_after_an_epochs_last_step_still_resumes(tiny_corpus_dir, tmp_path):
    """The periodic save never lands between an epoch's last window and its end (validation, the next epoch):
    a checkpoint there would resume at a window past the end of the data."""
    probe = Trainer(_config(tiny_corpus_dir), tmp_path / "probe")
    windows = probe.windows_per_epoch
    probe.metrics.close()
    config = _config(tiny_corpus_dir, "train.checkpoint_every_steps=1", "train.epochs=2")
    trainer = Trainer(config, tmp_path / "run")
    for _ in range(windows):  # the whole first epoch, but not its end: as if killed right there
        trainer._train_one_window()
    trainer.metrics.close()
    saved = load_checkpoint(tmp_path / "run" / LATEST)["progress"]
    assert saved["step"] == windows - 1 and saved["window"] < windows
    result = Trainer(config, tmp_path / "run", resume=True).fit()
    assert result.stopped_by == "epochs" and result.steps == 2 * windows
