import json
from importlib import resources

import jsonschema
import pytest

from rnnlab.cli import main
from rnnlab.demo import DemoSettings, run_demo

from .conftest import TINY_MODEL

SCHEMA = json.loads(resources.files("rnnlab.diagnostics").joinpath("schema.json").read_text())
REPORT_FILES = {"diagnostics.json", "gradient_flow.png", "jacobian.png", "spectrum.png", "saturation.png",
                "report.html"}


def _sets(*items):
    return [arg for item in items for arg in ("--set", item)]


def _check_report(folder):
    assert REPORT_FILES <= {p.name for p in folder.iterdir()}
    jsonschema.validate(json.loads((folder / "diagnostics.json").read_text()), SCHEMA)
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4, "images are embedded: the page needs no other file"
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_diagnose_an_untrained_model_from_a_preset(tiny_corpus_dir, tmp_path, capsys):
    out = tmp_path / "diag"
    assert main(["diagnose", "--preset", "ptb-small", "--data", str(tiny_corpus_dir), "--out", str(out),
                 "--length", "6", "--batch", "2", *_sets(*TINY_MODEL, "model.cell=rnn_tanh")]) == 0
    printed = capsys.readouterr().out
    assert "layer 0:" in printed and "layer 1:" in printed and str(out / "report.html") in printed
    _check_report(out)
    diagnosis = json.loads((out / "diagnostics.json").read_text())
    assert diagnosis["probe"] == {"steps": 6, "batch": 2} and diagnosis["cell"] == "rnn_tanh"


def test_diagnose_a_trained_checkpoint_and_a_task(tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet",
                 *_sets(*TINY_MODEL, "train.max_steps=3", "model.cell=gru")]) == 0
    assert main(["diagnose", "--checkpoint", str(run), "--out", str(tmp_path / "ckpt")]) == 0
    _check_report(tmp_path / "ckpt")
    assert main(["diagnose", "--preset", "adding-lstm", "--out", str(tmp_path / "task"), "--batch", "3",
                 *_sets("task.length=10", "model.hidden_size=6")]) == 0
    _check_report(tmp_path / "task")
    assert "(h, c)" in (tmp_path / "task" / "diagnostics.json").read_text()


def test_diagnose_needs_out_and_a_loadable_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["diagnose", "--preset", "ptb-small"])
    capsys.readouterr()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    assert main(["diagnose", "--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.integration
def test_demo_runs_in_reduced_mode(tmp_path):
    result = run_demo(tmp_path / "demo", DemoSettings.quick())
    verdicts = {row["name"]: row["verdict"] for row in result["gradient"]}
    assert verdicts["tanh-0.9"] == "vanishing" and verdicts["lstm-default"] == "vanishing"
    gains = {row["name"]: row["gain_per_step"] for row in result["gradient"]}
    assert gains["tanh-0.9"] < 1 < gains["tanh-1.5"], "sigma_max 0.9 shrinks the gradient per step, 1.5 grows it"
    clip = result["clipping"]
    expected = clip["lr"] * min(clip["grad_norm"], clip["clip_norm"])
    assert clip["clipped_update_norm"] == pytest.approx(expected, rel=1e-4)
    lm = result["language_model"]
    assert lm["valid_ppl"][-1] < lm["valid_ppl"][0], "perplexity falls"
    assert lm["sample"].startswith("the")
    depth = {row["skip"]: row["bottom_over_top"] for row in result["skip"]["depth"]}
    assert depth["residual"] > depth["none"] and depth["dense"] > depth["none"]
    plain, dilated = result["skip"]["time"]
    assert dilated["reach"] > plain["reach"], "dilation shortens the path back in time"
    # part 8 times things: which is faster is the benchmarks' business (bench/output_speed.py), not a test's
    rows = result["vocabulary"]["rows"]
    assert [row["vocab"] for row in rows] == [300, 3000]
    for row in rows:
        assert min(row["recurrent_ms"], row["full_ms"], row["sampled_ms"]) > 0
        assert row["step_speedup"] == pytest.approx(
            (row["recurrent_ms"] + row["full_ms"]) / (row["recurrent_ms"] + row["sampled_ms"]))
    for name in ("report.html", "demo.json", "gradient_flow.png", "lm_training.png", "skip_connections.png",
                 "vocabulary.png"):
        assert (tmp_path / "demo" / name).is_file()
    for case in verdicts:
        assert (tmp_path / "demo" / "cases" / case / "report.html").is_file()


def test_demo_cli_prints_the_table_and_the_report_path(tmp_path, capsys):
    assert main(["demo", "--quick", "--quiet", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "vanishing" in out and "LM valid perplexity" in out and str(tmp_path / "d" / "report.html") in out
