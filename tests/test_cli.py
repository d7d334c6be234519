import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from rnnlab.cli import main
from rnnlab.training.metrics import read_metrics

from .conftest import TINY_MODEL


def _sets(*items):
    return [arg for item in items for arg in ("--set", item)]


def _train(corpus_dir, run_dir, *extra):
    return main(["train", "--data", str(corpus_dir), "--run-dir", str(run_dir), "--quiet",
                 *_sets(*TINY_MODEL, *extra)])


def test_train_eval_generate_in_process(tiny_corpus_dir, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert _train(tiny_corpus_dir, run, "train.epochs=2") == 0
    out = capsys.readouterr().out
    assert "test perplexity " in out and str(run / "best.pt") in out and str(run / "metrics.jsonl") in out

    # eval on the best checkpoint reproduces the validation perplexity recorded during training
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    valid = [r for r in read_metrics(run / "metrics.jsonl") if r["event"] == "eval" and r["split"] == "valid"]
    best = min(valid, key=lambda r: r["loss"])
    assert report["tokens"] == best["tokens"] == sum(
        len(line.split()) + 1 for line in (tiny_corpus_dir / "valid.txt").read_text().splitlines())
    assert report["ppl"] == pytest.approx(best["ppl"], rel=1e-9)
    assert report["loss"] == pytest.approx(best["loss"], rel=1e-9)

    assert main(["eval", "--checkpoint", str(run), "--split", "test", "--quiet"]) == 0
    assert "test perplexity:" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(run), "--split", "test", "--mc-samples", "3", "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert sampled["mc_samples"] == 3 and sampled["split"] == "test" and sampled["tokens"] > 0
    assert main(["eval", "--checkpoint", str(run), "--split", "test"]) == 0  # no terminal: no bar frames
    captured = capsys.readouterr()
    assert "test perplexity:" in captured.out and "window" not in captured.err
    monkeypatch.setattr("rnnlab.cli._terminal", lambda: True)
    assert main(["eval", "--checkpoint", str(run), "--split", "test"]) == 0  # on a terminal: its progress bar
    captured = capsys.readouterr()
    assert "test perplexity:" in captured.out and "window" in captured.err

    args = ["generate", "--checkpoint", str(run / "best.pt"), "--tokens", "12", "--seed", "3", "--prompt", "the cat"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first, "the same seed gives the same sample"
    assert first.startswith("the cat")
    assert len(first.split()) >= 3


def test_generate_with_top_k_1_is_greedy(tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_corpus_dir, run, "train.max_steps=5") == 0
    capsys.readouterr()
    outputs = set()
    for seed in ("1", "2"):
        assert main(["generate", "--checkpoint", str(run), "--tokens", "8", "--top-k", "1", "--seed", seed]) == 0
        outputs.add(capsys.readouterr().out)
    assert len(outputs) == 1


def test_resume_continues_a_run_from_the_cli(tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_corpus_dir, run, "train.max_steps=4", "train.epochs=2") == 0
    assert main(["train", "--resume", str(run), "--quiet", "--set", "train.max_steps=0"]) == 0
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"]
    assert steps == sorted(set(steps)) and steps[:4] == [1, 2, 3, 4]
    assert "stopped by epochs" in capsys.readouterr().out


def test_plot_compares_runs(tiny_corpus_dir, tmp_path, capsys):
    for name in ("a", "b"):
        assert _train(tiny_corpus_dir, tmp_path / name, "train.max_steps=4") == 0
    out = tmp_path / "cmp.png"
    assert main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_a_task_trains_with_the_progress_bar_and_evaluates(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "--preset", "temporal-order-lstm", "--run-dir", str(run),
                 *_sets("task.length=10", "task.steps_per_epoch=3", "task.eval_sequences=20", "model.hidden_size=8",
                        "train.epochs=2", "train.log_every=1")]) == 0
    captured = capsys.readouterr()
    assert "valid cross_entropy" in captured.err and "accuracy" in captured.err
    assert "not learned: 0.2500" in captured.err
    assert "test accuracy" in captured.out
    assert main(["eval", "--checkpoint", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "temporal_order" and report["baseline_accuracy"] == 0.25
    monkeypatch.setattr("rnnlab.cli._terminal", lambda: True)
    assert main(["eval", "--checkpoint", str(run)]) == 0  # with its progress bar, on a terminal
    captured = capsys.readouterr()
    assert "valid accuracy" in captured.out and "window" in captured.err
    for option in (["--data", str(tmp_path)], ["--batch-size", "2"], ["--mc-samples", "2"]):
        assert main(["eval", "--checkpoint", str(run), *option]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{option[0]} applies to language models" in err
    assert main(["train", "--resume", str(run), "--data", str(tmp_path)]) == 2
    assert "--data applies to language models" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(run)]) == 2
    assert "language-model checkpoint" in capsys.readouterr().err


def test_presets_lists_one_line_each(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names == sorted(names) and len(names) == len(set(names))
    assert {"ptb-small", "ptb-medium", "ptb-large", "adding-rnn", "adding-lstm", "copy-lstm"} <= set(names)
    assert all(len(line.split(None, 1)) == 2 for line in lines), "every preset has a description"
    # every PTB preset names its source: the paper it follows, or the experiment that chose it
    assert all(re.search(r"\b(19|20)\d\d\b|experiments/\w+\.py", line) for line in lines if line.startswith("ptb-"))


def _bad_inputs(corpus, tmp):
    garbage = tmp / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    occupied = tmp / "occupied"
    occupied.mkdir()
    empty = tmp / "empty"
    empty.mkdir()
    for split in ("train", "valid", "test"):
        (empty / f"{split}.txt").write_text("a b c d e f g h\n" * 50 if split == "train" else "")
    (occupied / "metrics.jsonl").write_text("{}\n")
    (occupied / "best.pt").write_bytes(b"a checkpoint")  # a run with checkpoints: never replaced silently
    return {
        "unknown preset": ["train", "--preset", "ptb-huge"],
        "unknown key": ["train", "--set", "train.learning_rate=1"],
        "out of range": ["train", "--set", "train.bptt=0"],
        "missing data": ["train", "--data", str(tmp / "nowhere")],
        "missing config": ["train", "--config", str(tmp / "nowhere.toml")],
        "occupied run dir": ["train", "--data", str(corpus), "--run-dir", str(occupied)],
        "resume without a run": ["train", "--resume", str(tmp / "nowhere")],
        "missing checkpoint": ["eval", "--checkpoint", str(tmp / "nowhere.pt")],
        "garbage checkpoint": ["eval", "--checkpoint", str(garbage)],
        "bad temperature": ["generate", "--checkpoint", str(garbage), "--temperature", "0"],
        "bad token count": ["generate", "--checkpoint", str(garbage), "--tokens", "many"],
        "no command": [],
        "batch larger than the data": ["train", "--data", str(corpus), "--run-dir", str(tmp / "r1"),
                                       "--set", "train.batch_size=100000"],
        "empty split": ["train", "--data", str(empty), "--run-dir", str(tmp / "r2")],
        "bad device": ["eval", "--checkpoint", str(garbage), "--device", "gpu0"],
        "task length too short": ["diagnose", "--preset", "temporal-order-rnn", "--length", "4", "--out",
                                  str(tmp / "d")],
        "data for a task": ["train", "--preset", "adding-rnn", "--data", str(corpus)],
        "vocabulary of one": ["train", "--data", str(corpus), "--set", "data.max_size=1"],
    }


@pytest.mark.parametrize("case", [
    "unknown preset", "unknown key", "out of range", "missing data", "missing config", "occupied run dir",
    "resume without a run", "missing checkpoint", "garbage checkpoint", "bad temperature", "bad token count",
    "no command", "batch larger than the data", "empty split", "bad device", "task length too short",
    "data for a task", "vocabulary of one"])
def test_bad_input_is_one_line_and_a_non_zero_exit(case, tiny_corpus_dir, tmp_path, capsys):
    argv = _bad_inputs(tiny_corpus_dir, tmp_path)[case]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2, "bad input exits with 2, as argparse does"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], captured.err
    assert "Traceback" not in captured.err
    if case == "occupied run dir":
        assert (tmp_path / "occupied" / "metrics.jsonl").read_text() == "{}\n", "earlier results are kept"
        assert (tmp_path / "occupied" / "best.pt").read_bytes() == b"a checkpoint"


def test_resume_refuses_model_changes(tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_corpus_dir, run, "train.max_steps=2") == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "model.hidden_size=32"]) == 2
    assert "cannot change model.hidden_size" in capsys.readouterr().err


COMMAND_OPTIONS = {
    "train": ("--preset", "--config", "--data", "--run-dir", "--resume", "--set", "--quiet", "train.max_steps",
              "model.cell", "data.level", "diagnostics.every_steps", "task.name"),
    "eval": ("--checkpoint", "--data", "--split", "--batch-size", "--device", "--json", "--quiet"),
    "generate": ("--checkpoint", "--tokens", "--temperature", "--top-k", "--seed", "--prompt", "--device"),
    "diagnose": ("--checkpoint", "--preset", "--config", "--set", "--data", "--out", "--batch", "--length",
                 "--jacobian-sequences", "--device"),
    "demo": ("--out", "--quick", "--quiet"),
    "plot": ("RUN_DIR", "--out", "--labels"),
    "presets": (),
}


@pytest.mark.parametrize("command", list(COMMAND_OPTIONS))
def test_every_command_documents_its_options(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in COMMAND_OPTIONS[command]:
        assert option in text, f"{command} --help lacks {option}"


@pytest.mark.integration
def test_installed_console_script_trains_and_evaluates(tiny_corpus_dir, tmp_path):
    exe = shutil.which("rnnlab", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert exe, "the rnnlab console script is not installed (pip install -e .)"
    run = tmp_path / "run"
    train = subprocess.run([exe, "train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet",
                            *_sets(*TINY_MODEL, "train.max_steps=3")], capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    assert "test perplexity " in train.stdout
    evaluated = subprocess.run([exe, "eval", "--checkpoint", str(run), "--json"], capture_output=True, text=True,
                               timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert {"loss", "ppl", "tokens"} <= set(json.loads(evaluated.stdout))
    module = subprocess.run([sys.executable, "-m", "rnnlab", "presets"], capture_output=True, text=True, timeout=300)
    assert module.returncode == 0 and "ptb-small" in module.stdout


def test_bench_compares_rnnlab_with_the_plain_loop(tiny_corpus_dir, capsys):
    assert main(["bench", "--data", str(tiny_corpus_dir), "--steps", "2", "--rounds", "2", "--json",
                 *_sets(*TINY_MODEL, "regularization.recurrent_dropout=0.2")]) == 0
    report = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    speeds = report["tokens_per_s"]
    assert len(report["rounds"]) == 2 and speeds["rnnlab"] > 0 and speeds["baseline"] > 0
    assert report["ratio"] == pytest.approx(speeds["rnnlab"] / speeds["baseline"])
    low, high = report["ratio_spread"]
    assert low <= high and all(low <= r <= high for r in report["ratio_per_round"])
    assert report["shape"] == {"cell": "lstm", "layers": 2, "hidden": 8, "embedding": 8, "bptt": 5, "batch": 4}
    assert main(["bench", "--preset", "adding-lstm"]) == 2  # a task has no language-model loop to compare
