from dataclasses import dataclass

import pytest

from rnnlab import config as config_module
from rnnlab.config import (
    CONFIG_VERSION,
    Config,
    ModelConfig,
    _validate_section,
    describe_keys,
    load_config,
    migrate,
    parse_overrides,
    preset_names,
    read_preset,
    rename_key,
    setting,
)
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
    reg = config.regularization
    assert reg.input_dropout == reg.hidden_dropout == reg.output_dropout == dropout and not config.model.tie_weights
    assert reg.dropout_kind == "standard" and reg.recurrent_dropout == reg.weight_drop == reg.embedding_dropout == 0
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
    ("regularization.hidden_dropout=1.0", "must be < 1.0"),
    ("model.dropout=0.5", "it moved: write regularization.input_dropout"),
    ("data.split=[0.5, 0.1, 0.1]", "summing to 1"),
    ("train.device=gpu", "train.device"),
])
def test_bad_overrides_raise_config_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_tie_weights_with_different_sizes_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"model.hidden_size = 200\) == model.embedding_dim \(100\); set "
                                          r"model.last_layer_size = 100"):
        load_config(overrides=["model.tie_weights=true", "model.embedding_dim=100"])
    with pytest.raises(ConfigError, match=r"model.last_layer_size = 50\) == model.embedding_dim \(100\)"):
        load_config(overrides=["model.tie_weights=true", "model.embedding_dim=100", "model.last_layer_size=50"])


def test_last_layer_size_sets_the_top_layer_only():
    config = load_config(overrides=["model.num_layers=3", "model.hidden_size=30", "model.last_layer_size=20",
                                    "model.embedding_dim=20", "model.tie_weights=true"])
    assert config.model.layer_sizes == (30, 30, 20)
    assert load_config(overrides=["model.num_layers=3"]).model.layer_sizes == (200, 200, 200)


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


# ---------------------------------------------------------------- list-valued keys and versions


@dataclass(frozen=True)
class _ListSection:
    """A section shaped like the per-layer keys to come (dilations, cutoffs, per-layer dropout)."""

    dilations: tuple[int, ...] = setting((1,), "per layer", low=1)
    rates: tuple[float, ...] = setting((), "per layer", low=0.0, high=1.0, high_open=True)

    def __post_init__(self) -> None:
        _validate_section("test", self)


def test_list_valued_keys_take_any_length_and_check_each_item():
    assert _ListSection(dilations=[1, 2, 4, 8]).dilations == (1, 2, 4, 8)
    assert _ListSection(dilations=[3]).dilations == (3,) and _ListSection(rates=[]).rates == ()
    assert _ListSection(rates=[0, 0.5]).rates == (0.0, 0.5)  # integers become floats, item by item
    with pytest.raises(ConfigError, match=r"test.dilations\[2\] must be >= 1, got 0"):
        _ListSection(dilations=[1, 2, 0])
    with pytest.raises(ConfigError, match=r"test.rates\[1\] must be < 1.0"):
        _ListSection(rates=[0.1, 1.0])
    with pytest.raises(ConfigError, match=r"test.dilations\[1\] expects an integer"):
        _ListSection(dilations=[1, 2.5])
    with pytest.raises(ConfigError, match=r"test.dilations expects a list"):
        _ListSection(dilations=4)


def test_list_valued_keys_travel_through_overrides_toml_and_docs(monkeypatch, tmp_path):
    @dataclass(frozen=True)
    class ModelWithDilations(ModelConfig):
        dilations: tuple[int, ...] = setting((1, 1), "recurrence distance per layer", low=1)

        def __post_init__(self) -> None:
            _validate_section("model", self)

    monkeypatch.setitem(config_module.SECTIONS, "model", ModelWithDilations)
    parsed = parse_overrides(["model.dilations=[1, 2, 4, 8]"])
    assert parsed == {"model.dilations": [1, 2, 4, 8]}
    raw = Config().to_dict()
    raw["model"]["dilations"] = parsed["model.dilations"]
    config = Config.from_dict(raw)
    assert config.model.dilations == (1, 2, 4, 8)
    assert "dilations = [1, 2, 4, 8]" in config.to_toml()
    assert Config.from_dict(config.to_dict()) == config
    assert "model.dilations = [1, 1]: recurrence distance per layer" in describe_keys()


def test_configs_carry_their_version(tmp_path):
    config = load_config()
    assert config.to_dict()["version"] == CONFIG_VERSION
    assert config.to_toml().startswith(f"version = {CONFIG_VERSION}\n")
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml(), encoding="utf-8")
    assert load_config(config_file=path) == config


def test_a_config_without_a_version_is_version_1_and_migrates(monkeypatch):
    """A future rename, played out: version 3 renames train.clip_norm; older configs still load."""
    monkeypatch.setattr(config_module, "CONFIG_VERSION", 3)
    steps = dict(config_module.MIGRATIONS)
    seen = []
    steps[1] = lambda raw, base: seen.append(1)
    steps[2] = lambda raw, base: (seen.append(2), rename_key(raw, "train.clip_norm", "train.max_grad_norm"))
    monkeypatch.setattr(config_module, "MIGRATIONS", steps)
    migrated = migrate({"train": {"clip_norm": 0.5, "lr": 2.0}})  # no version: 1
    assert seen == [1, 2] and migrated == {"train": {"max_grad_norm": 0.5, "lr": 2.0}}
    seen.clear()
    assert migrate({"version": 2, "train": {"clip_norm": 0.5}}) == {"train": {"max_grad_norm": 0.5}}
    assert seen == [2]
    seen.clear()
    assert migrate({"version": 3, "train": {"clip_norm": 0.5}}) == {"train": {"clip_norm": 0.5}} and not seen


@pytest.mark.parametrize("version, message", [(99, "newer than this rnnlab reads"), (0, "whole number >= 1"),
                                              ("2", "whole number >= 1")])
def test_a_bad_or_newer_config_version_is_refused(version, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"version": version})


def test_every_version_before_the_current_one_has_a_migration_step():
    assert sorted(config_module.MIGRATIONS) == list(range(1, CONFIG_VERSION))


def test_a_config_file_naming_a_preset_migrates_only_its_own_keys(tmp_path):
    path = tmp_path / "old.toml"  # no version: 1; model.dropout moved in version 3
    path.write_text('preset = "ptb-medium"\n[model]\ndropout = 0.3\n', encoding="utf-8")
    reg = load_config(config_file=path).regularization
    assert (reg.input_dropout, reg.hidden_dropout, reg.output_dropout) == (0.3, 0.3, 0.3)
    current = tmp_path / "new.toml"
    current.write_text(f'version = {CONFIG_VERSION}\npreset = "ptb-medium"\n[train]\nepochs = 2\n', encoding="utf-8")
    config = load_config(config_file=current)
    assert config.regularization.hidden_dropout == 0.5 and config.train.epochs == 2


def test_fixed_length_list_errors_name_the_item():
    with pytest.raises(ConfigError, match=r"data.split\[2\] expects a number"):
        load_config(overrides=["data.split=[0.9, 0.05, 'a']"])


@pytest.mark.parametrize("name, inner, outer", [("ptb-medium-variational", 0.35, 0.2),
                                                 ("ptb-large-variational", 0.5, 0.3)])
def test_variational_presets_are_gal_and_ghahramani_2016(name, inner, outer):
    config, zaremba = load_config(name), load_config(name.removesuffix("-variational"))
    reg = config.regularization
    assert reg.input_dropout == reg.hidden_dropout == reg.output_dropout == inner and reg.dropout_kind == "variational"
    assert reg.recurrent_dropout == reg.embedding_dropout == outer and reg.recurrent_dropout_kind == "variational"
    assert config.model == zaremba.model and config.train == zaremba.train  # all else as Zaremba et al. 2014


def test_old_model_dropout_keeps_its_meaning_for_a_task_named_by_its_preset(tmp_path):
    """Task models had no input dropout: a version-1 file on a task preset gets none."""
    path = tmp_path / "old-task.toml"
    path.write_text('preset = "adding-lstm"\n[model]\ndropout = 0.3\n', encoding="utf-8")
    reg = load_config(config_file=path).regularization
    assert (reg.input_dropout, reg.hidden_dropout, reg.output_dropout) == (0.0, 0.3, 0.3)
