"""Format-1 checkpoints (one multi-layer torch.nn module, config without a version) still load,
evaluate to what they evaluated to when they were written, and resume (see tests/data/v1/README.md)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from rnnlab.cli import main
from rnnlab.config import CONFIG_VERSION, DataConfig, load_config
from rnnlab.data.corpus import load_split
from rnnlab.training.checkpoint import FORMAT_VERSION, load_checkpoint, model_from_checkpoint
from rnnlab.training.metrics import read_metrics

V1 = Path(__file__).parent / "data" / "v1"
EXPECTED = json.loads((V1 / "expected.json").read_text())


def _eval_json(capsys, *args):
    assert main(["eval", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_fixtures_are_format_1():
    raw = torch.load(V1 / "lm" / "best.pt", weights_only=True)
    assert raw["format_version"] == 1 and "version" not in raw["config"]
    assert "rnn.weight_hh_l1" in raw["model"]


@pytest.mark.parametrize("split", ["valid", "test"])
def test_a_format_1_language_model_evaluates_to_its_old_perplexity(capsys, split):
    result = _eval_json(capsys, "--checkpoint", str(V1 / "lm" / "best.pt"), "--data", str(V1 / "corpus"),
                        "--split", split, "--quiet")
    expected = EXPECTED[f"lm_{split}"]
    assert result["tokens"] == expected["tokens"]
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert result["ppl"] == pytest.approx(expected["ppl"], rel=1e-6)


def test_a_format_1_model_equals_torch_modules_loaded_from_its_old_keys():
    payload = load_checkpoint(V1 / "lm" / "best.pt")
    assert payload["format_version"] == FORMAT_VERSION
    model, config, vocab = model_from_checkpoint(payload)
    model.eval()
    raw = torch.load(V1 / "lm" / "best.pt", weights_only=True)["model"]
    m = config.model
    lstm = nn.LSTM(m.embedding_dim, m.hidden_size, m.num_layers)
    lstm.load_state_dict({k[len("rnn."):]: v for k, v in raw.items() if k.startswith("rnn.")})
    ids, _, _ = load_split(DataConfig(path=str(V1 / "corpus")), vocab, "valid")
    tokens = ids[:-1].view(-1, 1)
    hidden, _ = lstm(F.embedding(tokens, raw["embedding.weight"]))
    logits = F.linear(hidden, raw["output.weight"], raw["output.bias"])
    expected = F.cross_entropy(logits.view(-1, len(vocab)), ids[1:], reduction="sum")
    with torch.no_grad():
        ours = model.exact_loss(tokens, ids[1:].view(-1, 1))
    assert_close(ours.loss, expected)


def test_a_format_1_task_checkpoint_evaluates_to_its_old_metric(capsys):
    result = _eval_json(capsys, "--checkpoint", str(V1 / "task" / "best.pt"), "--split", "test", "--quiet")
    assert result["task"] == "adding"
    assert result["mse"] == pytest.approx(EXPECTED["task_test"]["mse"], rel=1e-6)


def test_a_format_1_run_resumes_and_is_rewritten_in_the_current_formats(tmp_path, capsys):
    run = tmp_path / "lm"
    shutil.copytree(V1 / "lm", run)
    code = main(["train", "--resume", str(run), "--data", str(V1 / "corpus"), "--set", "train.epochs=3", "--quiet"])
    assert code == 0, capsys.readouterr().err
    latest = torch.load(run / "latest.pt", weights_only=True)
    assert latest["format_version"] == FORMAT_VERSION and latest["config"]["version"] == CONFIG_VERSION
    assert latest["progress"]["epoch"] == 4  # three epochs done
    assert (run / "config.toml").read_text().startswith(f"version = {CONFIG_VERSION}\n")
    records = read_metrics(run / "metrics.jsonl")
    valid_epochs = [r["epoch"] for r in records if r["event"] == "eval" and r["split"] == "valid"]
    assert valid_epochs == [1, 2, 3]


def test_a_format_1_config_toml_keeps_its_meaning():
    """model.dropout (Zaremba's non-recurrent dropout) became three regularization keys of the same rate."""
    config = load_config(config_file=V1 / "lm" / "config.toml")
    reg = config.regularization
    assert (reg.input_dropout, reg.hidden_dropout, reg.output_dropout) == (0.2, 0.2, 0.2)
    assert reg.dropout_kind == "standard" and reg.recurrent_dropout == 0.0
