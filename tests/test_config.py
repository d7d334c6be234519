import pytest

from rnnlab.config import Config, describe_keys, load_config, parse_overrides, preset_names, read_preset
from rnnlab.errors import ConfigError

# Zaremba et al. 2014 (see shared ANCHORS): init, lr, clip, bptt, full-lr epochs, decay, epochs, dropout, size.
ZAREMBA = {
    "ptb-small": (0.1, 1.0, 5.0, 20, 4, 0.5, 13, 0.0, 200),
    "ptb-medium": (0.05, 1.0, 5.0, 35, 6, 0.8, 39, 0.5, 650),
    "ptb-large": (0.04, 1.0, 10.0, 35, 14, 1 / 1.15, 55, 0.65, 1500),
}


@pytest.mark.parametrize("name", sorted(ZAREMBA))
def test_ptb_presets_are_zaremba_2014(name):
    config = load_config(name)
    init, lr, clip, bptt, full, decay, epochs, dropout, hidden = ZAREMBA[name]
    assert config.model.init == "uniform" and config.model.init_range == init
    assert config.train.optimizer == "sgd" and config.train.lr == lr and config.train.clip_norm == clip
    assert config.train.bptt == bptt and config.train.batch_size == 20
    assert config.train.schedule == "zaremba" and config.train.full_lr_epochs == full
    assert config.train.lr_decay == pytest.approx(decay) and config.train.epochs == epochs
    assert config.model.dropout == dropout and not config.model.tie_weights
    assert config.model.hidden_size == config.model.embedding_dim == hidden and config.model.num_layers == 2
    assert config.train.loss_average == "sequences"  # the paper's lr 1 / clip 5 assume it
    assert read_preset(name)["description"]


def test_default_is_ptb_small():
    assert load_config() == load_config("ptb-small")
    assert set(ZAREMBA) <= set(preset_names())


def test_overrides_are_typed():
    config = load_config(overrides=["train.max_steps=50", "data.level=char", "model.cell=gru",
                                    "model.tie_weights=true", "train.lr=1e-3", "data.split=[0.8, 0.1, 0.1]",
                                    "train.device=cuda:1"])
    assert config.train.max_steps == 50 and config.data.level == "char" and config.model.cell == "gru"
    assert config.model.tie_weights is True and config.train.lr == 1e-3
    assert config.data.split == (0.8, 0.1, 0.1) and config.train.device == "cuda:1"
    assert load_config(overrides=["model.forget_bias=1"]).model.forget_bias == 1.0
    assert load_config(overrides=["model.forget_bias=none"]).model.forget_bias is None
    with pytest.raises(ConfigError, match="lstm cell only"):
        load_config(overrides=["model.cell=gru", "model.forget_bias=1"])


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "did you mean 'train.lr'"),
    ("trian.lr=1", "unknown section"),
    ("train.lr=-1", "train.lr must be > 0"),
    ("train.batch_size=2.5", "expects an integer"),
    ("model.cell=transformer", "model.cell must be one of"),
    ("model.tie_weights=maybe", "expects true or false"),
    ("train.lr", "section.key=value"),
    ("model.dropout=1.0", "must be < 1.0"),
    ("data.split=[0.5, 0.1, 0.1]", "summing to 1"),
    ("train.device=gpu", "train.device"),
])
def test_bad_overrides_raise_config_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_tie_weights_with_different_sizes_is_a_clear_error():
    with pytest.raises(ConfigError, match="hidden_size == model.embedding_dim, got 200 != 100"):
        load_config(overrides=["model.tie_weights=true", "model.embedding_dim=100"])


def test_unknown_preset_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'ptb-small'"):
        load_config("ptb-smal")


def test_config_file_can_start_from_a_preset(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text('preset = "ptb-medium"\n[train]\nepochs = 2\n', encoding="utf-8")
    config = load_config(config_file=path)
    assert config.train.epochs == 2 and config.model.hidden_size == 650


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(config_file=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(config_file=bad)


def test_toml_and_dict_round_trip(tmp_path):
    config = load_config("ptb-large", overrides=["model.forget_bias=1.5", "data.path=/x/y z"])
    assert Config.from_dict(config.to_dict()) == config
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml(), encoding="utf-8")
    assert load_config(config_file=path) == config


def test_every_key_is_documented():
    lines = describe_keys()
    assert any(line.startswith("train.max_steps = 0:") for line in lines)
    assert all(line.split(": ", 1)[1].strip() for line in lines)


def test_string_fields_keep_raw_text():
    assert parse_overrides(["data.path=123"]) == {"data.path": "123"}
    assert parse_overrides(['data.path="a b"']) == {"data.path": "a b"}


def test_docs_configuration_lists_every_key_as_the_code_describes_it():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [line for line in describe_keys() if line not in doc]
    assert not missing, f"docs/configuration.md is out of date: {missing}"
