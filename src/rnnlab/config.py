"""Typed, frozen configuration.

Resolution order: dataclass defaults -> a preset (or a TOML file) -> ``--set section.key=value``.
Every field carries its help text and its allowed values, so validation, ``--help`` and the docs
read from one place. The resolved config is written to each run directory and stored in every
checkpoint (``Config.to_dict``), and ``Config.from_dict`` rebuilds it with the same validation.

Configs carry a ``version``. When a key is renamed or moved, ``CONFIG_VERSION`` goes up and a step
in ``MIGRATIONS`` rewrites older configs (run directories, checkpoints, users' files), so every run
ever written still loads. A config without a version predates versions: it is version 1.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_PRESET = "ptb-small"
CELL_TYPES = ("rnn_tanh", "rnn_relu", "lstm", "gru")
SKIP_KINDS = ("none", "residual", "dense")
OUTPUT_KINDS = ("softmax", "sampled", "nce", "adaptive", "auto")
CONFIG_VERSION = 3


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """A config field with its help text and its allowed values (checked in ``__post_init__``)."""
    meta = {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    path: str = setting(
        "builtin:ptb",
        "corpus: a directory holding train.txt/valid.txt/test.txt, one text file split by data.split, "
        "or builtin:ptb (the vendored Penn Treebank)",
    )
    level: str = setting("word", "tokenization: word (whitespace, <eos> at line ends), char (Unicode code points, "
                         "<eos> for line ends) or subword (SentencePiece units learned from the training split; "
                         "data.vocab_size, data.subword_model)", choices=("word", "char", "subword"))
    vocab_size: int = setting(8000, "subword level: the most pieces SentencePiece may learn (a small text may give "
                              "fewer)", low=2)
    subword_model: str = setting("unigram", "subword level: SentencePiece's algorithm, unigram (Kudo 2018) or bpe "
                                 "(Sennrich et al. 2016)", choices=("unigram", "bpe"))
    split: tuple[float, float, float] = setting(
        (0.9, 0.05, 0.05), "train/valid/test fractions when data.path is a single file")
    min_freq: int = setting(1, "training-set count a token needs to enter the vocabulary", low=1)
    max_size: int = setting(0, "largest vocabulary, <unk> and <eos> included (0 = no limit)", low=0)
    allow_changed: bool = setting(False, "--resume even though the corpus files changed since the checkpoint (by "
                                  "default a changed content hash is refused)")

    def __post_init__(self) -> None:
        _validate_section("data", self)
        if self.level == "subword" and (self.min_freq != 1 or self.max_size):
            raise ConfigError("data.min_freq and data.max_size apply to the word and char levels; the subword level "
                              "sizes its vocabulary with data.vocab_size")
        if self.max_size == 1:
            raise ConfigError("data.max_size must be 0 (no limit) or >= 2 (<unk> and <eos> always take 2), got 1")
        if any(f < 0 for f in self.split) or not math.isclose(sum(self.split), 1.0, abs_tol=1e-6):
            raise ConfigError(f"data.split must be three non-negative fractions summing to 1, got {list(self.split)}")
        if self.split[0] <= 0:
            raise ConfigError(f"data.split needs a training fraction > 0, got {list(self.split)}")


@dataclass(frozen=True)
class ModelConfig:
    cell: str = setting("lstm", "recurrent cell", choices=CELL_TYPES)
    num_layers: int = setting(2, "stacked recurrent layers", low=1)
    hidden_size: int = setting(200, "units per recurrent layer", low=1)
    last_layer_size: int = setting(
        0, "units of the last recurrent layer, the one the output layer reads (0 = hidden_size); AWD-LSTM "
        "(Merity et al. 2017) sets it to embedding_dim so that a wide stack can tie its weights", low=0)
    embedding_dim: int = setting(200, "input embedding size", low=1)
    tie_weights: bool = setting(False, "share the embedding and output weights (Inan et al. 2017; "
                                "needs the last layer's size == embedding_dim)")
    init: str = setting("uniform", "weight init: uniform (every weight U[-init_range, init_range], "
                        "Zaremba 2014) or default (PyTorch's)", choices=("uniform", "default"))
    init_range: float = setting(0.1, "half-width a of the uniform init", low=0.0, low_open=True)
    forget_bias: float | None = setting(None, "LSTM forget-gate bias (b_ih + b_hh) after init; none "
                                        "keeps the init")
    output: str = setting(
        "softmax", "output layer: softmax (the full softmax), sampled (a sampled softmax, Jean et al. 2015), nce "
        "(noise-contrastive estimation, Mnih & Teh 2012), adaptive (adaptive softmax, Grave et al. 2017) or auto "
        "(softmax below the vocabulary size where sampling pays on the device, sampled above; docs/RESULTS.md). "
        "Settings in [output]. Evaluation is always exact: every perplexity compares with every other",
        choices=OUTPUT_KINDS)
    skip: str = setting(
        "none", "connections that skip layers: none, residual (each layer's input added to its output, through a "
        "learned projection where sizes differ) or dense (the stack's input reaches every layer, every layer's "
        "output reaches the output layer through a projection: Graves 2013)", choices=SKIP_KINDS)
    dilations: tuple[int, ...] = setting(
        (), "per layer, the step distance d of its recurrence, h_t from h_(t-d) (dilated RNN, Chang et al. "
        "2017), e.g. [1, 2, 4, 8]; empty = 1 for every layer", low=1)
    recurrent_init: str = setting(
        "same", "W_hh init: same (as model.init), default (PyTorch's), orthogonal, or identity (IRNN, Le et "
        "al. 2015); per gate block for lstm/gru", choices=("same", "default", "orthogonal", "identity"))
    recurrent_scale: float | None = setting(
        None, "rescale every W_hh (each gate block for lstm/gru) to this largest singular value sigma_max; "
        "none keeps it", low=0.0, low_open=True)

    def __post_init__(self) -> None:
        _validate_section("model", self)
        if self.tie_weights and self.layer_sizes[-1] != self.embedding_dim:
            which = "model.last_layer_size" if self.last_layer_size else "model.hidden_size"
            raise ConfigError(f"model.tie_weights needs the last layer's size ({which} = {self.layer_sizes[-1]}) "
                              f"== model.embedding_dim ({self.embedding_dim}); set model.last_layer_size = "
                              f"{self.embedding_dim} to tie a wider stack")
        if self.forget_bias is not None and self.cell != "lstm":
            raise ConfigError(f"model.forget_bias applies to the lstm cell only, not {self.cell!r}")
        if self.output == "adaptive" and self.tie_weights:
            raise ConfigError("model.output = adaptive has no (V, H) output matrix to share with the embedding; set "
                              "model.tie_weights = false, or use softmax, sampled or nce")
        if self.dilations and len(self.dilations) != self.num_layers:
            raise ConfigError(f"model.dilations needs one entry per layer ({self.num_layers}), got "
                              f"{list(self.dilations)}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Units of each recurrent layer, bottom to top."""
        return (self.hidden_size,) * (self.num_layers - 1) + (self.last_layer_size or self.hidden_size,)


@dataclass(frozen=True)
class OutputConfig:
    num_samples: int = setting(1024, "sampled / nce: candidates (noise ids) drawn per training step, shared by the "
                               "batch", low=1)
    sampler: str = setting(
        "default", "sampled / nce: the proposal the candidates come from: log_uniform (Zipfian over the "
        "frequency-sorted ids, TensorFlow's default), unigram (training counts ^ unigram_power) or default "
        "(log_uniform for sampled, unigram for nce)", choices=("default", "log_uniform", "unigram"))
    unigram_power: float = setting(0.75, "unigram sampler: the power the training counts are raised to", low=0.0)
    replacement: bool = setting(False, "sampled / nce: draw with replacement (false: distinct candidates, "
                                "TensorFlow's unique sampling)")
    cutoffs: tuple[int, ...] = setting(
        (), "adaptive: the ids where the head and each tail cluster end, increasing, below the vocabulary size; "
        "empty = from training frequencies (the head covers 80% of the tokens, the first tail 95%)", low=1)
    div_value: float = setting(4.0, "adaptive: each tail cluster's projection is this much narrower than the "
                               "last", low=1.0)

    def __post_init__(self) -> None:
        _validate_section("output", self)
        if list(self.cutoffs) != sorted(set(self.cutoffs)):
            raise ConfigError(f"output.cutoffs must increase strictly, got {list(self.cutoffs)}")


DROPOUT_KINDS = ("standard", "variational")
RECURRENT_DROPOUT_KINDS = ("naive", "variational", "variational_per_sequence")


def _rate(help: str) -> Any:
    return setting(0.0, help, low=0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class RegularizationConfig:
    input_dropout: float = _rate("dropout on the recurrent stack's inputs (the embeddings)")
    hidden_dropout: float = _rate("dropout between stacked recurrent layers")
    output_dropout: float = _rate("dropout on the last layer's outputs, before the output layer")
    dropout_kind: str = setting(
        "standard", "input/hidden/output dropout: standard (a fresh mask per element and step, Zaremba et al. "
        "2014) or variational (one mask per sequence, kept for every step of the window: locked dropout, Gal & "
        "Ghahramani 2016)", choices=DROPOUT_KINDS)
    recurrent_dropout: float = _rate("dropout on h_{t-1} where it enters W_hh, the recurrent connection itself")
    recurrent_dropout_kind: str = setting(
        "variational", "naive (a fresh mask every step: the source document's counterexample, step-by-step path), "
        "variational (one mask for every step and sequence of the window, as zeroed W_hh columns on the fused "
        "kernel) or variational_per_sequence (one mask per sequence held across time, Gal & Ghahramani 2016; "
        "step-by-step path)", choices=RECURRENT_DROPOUT_KINDS)
    weight_drop: float = _rate("DropConnect on W_hh, a fresh mask each forward pass (Merity et al. 2017)")
    embedding_dropout: float = _rate("drop whole word types (embedding rows) per batch, rescaled (Gal & "
                                     "Ghahramani 2016; Merity et al. 2017)")
    ar: float = setting(0.0, "activation regularization alpha: alpha * mean(dropped last-layer output^2) added to "
                        "the averaged training loss (Merity et al. 2017, whose alpha 2 assumes "
                        "train.loss_average = tokens)", low=0.0)
    tar: float = setting(0.0, "temporal activation regularization beta: beta * mean((h_t - h_{t-1})^2) of the last "
                         "layer's outputs added to the averaged training loss (Merity et al. 2017, whose beta 1 "
                         "assumes train.loss_average = tokens)", low=0.0)

    def __post_init__(self) -> None:
        _validate_section("regularization", self)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = setting("sgd", "sgd (plain, as Zaremba 2014), adam or adamw",
                             choices=("sgd", "adam", "adamw"))
    lr: float = setting(1.0, "initial learning rate", low=0.0, low_open=True)
    momentum: float = setting(0.0, "SGD momentum", low=0.0, high=1.0, high_open=True)
    weight_decay: float = setting(0.0, "L2 penalty (decoupled for adamw)", low=0.0)
    schedule: str = setting(
        "zaremba", "zaremba (constant for full_lr_epochs, then x lr_decay per epoch), plateau (lr / "
        "plateau_factor when validation does not improve) or none", choices=("zaremba", "plateau", "none"))
    full_lr_epochs: int = setting(4, "zaremba schedule: epochs at the initial lr", low=0)
    lr_decay: float = setting(0.5, "zaremba schedule: lr factor per epoch after full_lr_epochs",
                              low=0.0, high=1.0, low_open=True)
    plateau_factor: float = setting(4.0, "plateau schedule: lr divisor", low=1.0, low_open=True)
    clip_norm: float = setting(5.0, "clip the global gradient norm to this (0 = no clipping)", low=0.0)
    loss_average: str = setting(
        "sequences", "what the training loss is averaged over: sequences (summed over the bptt window, "
        "averaged over the batch: Zaremba 2014, so lr 1 and clip 5 mean what the paper means) or tokens "
        "(PyTorch's word_language_model)", choices=("sequences", "tokens"))
    batch_size: int = setting(20, "parallel token streams (columns) in training", low=1)
    bptt: int = setting(20, "truncated-BPTT window length", low=1)
    variable_bptt: bool = setting(
        False, "draw each window's length around bptt (bptt, or bptt / 2 with probability 0.05, plus N(0, 5) "
        "steps, at least 5) and, with loss_average = tokens, scale that step's lr by length / bptt (Merity et "
        "al. 2017; a loss summed over the window already grows with its length)")
    averaging: str = setting(
        "none", "weight averaging: none, or nonmono (NT-ASGD, Merity et al. 2017: start averaging the weights "
        "once the validation loss is worse than the best of all but the last train.nonmono validations; "
        "validation, best.pt and test then use the averaged weights)", choices=("none", "nonmono"))
    nonmono: int = setting(5, "NT-ASGD's patience: validations that may fail to improve before averaging starts",
                           low=1)
    eval_batch_size: int = setting(10, "parallel streams in evaluation", low=1)
    epochs: int = setting(13, "training epochs", low=1)
    max_steps: int = setting(0, "stop after this many optimizer steps (0 = no limit)", low=0)
    max_minutes: float = setting(0.0, "stop after this much wall time (0 = no limit)", low=0.0)
    eval_every_steps: int = setting(0, "also validate every N steps (0 = once per epoch only)", low=0)
    log_every: int = setting(50, "steps between train records in metrics.jsonl", low=1)
    checkpoint_every_minutes: float = setting(
        10.0, "also write latest.pt mid-epoch once this much wall time has passed since the last save (0 = only at "
        "epoch ends and stops): a crash or kill loses at most this much training; ptb-large's weights are 264 MB, "
        "a few seconds to write every 10 minutes", low=0.0)
    checkpoint_every_steps: int = setting(0, "also write latest.pt every N steps (0 = off)", low=0)
    keep_checkpoints: int = setting(
        0, "besides latest.pt and best.pt, keep the last K step-stamped copies of latest.pt (step-00001234.pt)", low=0)
    max_nonfinite_steps: int = setting(
        10, "a step whose loss or gradient is not finite is skipped (no update, logged); after this many in a row "
        "the run stops", low=1)
    seed: int = setting(1, "seed for init, dropout and sampling", low=0)
    device: str = setting("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    distributed_timeout: float = setting(
        300.0, "under torchrun: seconds a rank waits for the others at a collective before it stops with one line "
        "(a rank that died makes the rest exit instead of hang)", low=0.0, low_open=True)
    tensorboard: bool = setting(False, "also log the metrics to TensorBoard (RUN_DIR/tensorboard)")
    precision: str = setting(
        "fp32", "fp32, or bf16: the training forward under torch.autocast to bfloat16 on CUDA (weights, "
        "gradients, optimizer state and the loss stay float32; validation and test run in float32). CUDA only",
        choices=("fp32", "bf16"))
    cuda_graphs: bool = setting(
        False, "capture the whole training step (forward, backward, clip, update, the step's bookkeeping) in a "
        "CUDA graph and replay it: a few launches per step instead of hundreds; an epoch's short last window runs "
        "uncaptured. CUDA only, language models, one process, windows of one length (no variable_bptt) and the "
        "full softmax output")

    def __post_init__(self) -> None:
        _validate_section("train", self)
        check_device_name(self.device, "train.device")


@dataclass(frozen=True)
class TaskConfig:
    name: str = setting(
        "none", "a synthetic long-range task instead of a corpus: adding (Le et al. 2015), copy (Arjovsky et "
        "al. 2016) or temporal_order (Pascanu et al. 2013); none trains a language model on data.path",
        choices=("none", "adding", "copy", "temporal_order"))
    length: int = setting(100, "sequence length T of the task", low=2)
    steps_per_epoch: int = setting(100, "fresh training batches per epoch (tasks draw new data every step)", low=1)
    eval_sequences: int = setting(1000, "sequences in each of the task's fixed valid and test sets", low=1)

    def __post_init__(self) -> None:
        _validate_section("task", self)
        if self.name == "temporal_order" and self.length < 10:
            raise ConfigError(f"task.length must be >= 10 for temporal_order, got {self.length}")


@dataclass(frozen=True)
class DiagnosticsConfig:
    every_steps: int = setting(0, "during training, measure gradient flow, W_hh spectra and saturation on a "
                               "probe batch every N steps and log them (0 = never)", low=0)
    batch: int = setting(8, "sequences in the probe batch", low=1)
    length: int = setting(0, "steps in the probe batch (0 = train.bptt for language models, task.length "
                          "for tasks)", low=0)


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "output": OutputConfig,
                             "regularization": RegularizationConfig, "train": TrainConfig, "task": TaskConfig,
                             "diagnostics": DiagnosticsConfig}

# Keys a resumed run may change: limits and logging, nothing that alters the maths of training.
RESUMABLE_KEYS = frozenset({
    "data.path",  # the corpus may move; the vocabulary and content-hash checks on resume guard its content
    "data.allow_changed",
    "train.epochs", "train.max_steps", "train.max_minutes", "train.device", "train.log_every",
    "train.eval_every_steps", "train.tensorboard", "train.checkpoint_every_minutes", "train.checkpoint_every_steps",
    "train.distributed_timeout", "train.cuda_graphs", "train.precision",  # how the device computes, like train.device
    "train.keep_checkpoints", "train.max_nonfinite_steps", "diagnostics.every_steps", "diagnostics.batch",
    "diagnostics.length",
})


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)

    def __post_init__(self) -> None:
        if self.is_task and self.model.tie_weights:
            raise ConfigError(f"model.tie_weights needs a vocabulary to tie; the {self.task.name} task has none")
        if self.is_task and self.model.output != "softmax":
            raise ConfigError(f"model.output = {self.model.output} chooses how a vocabulary is predicted; the "
                              f"{self.task.name} task has none (leave it softmax)")
        if self.is_task and self.regularization.embedding_dropout:
            raise ConfigError(f"regularization.embedding_dropout drops word types; the {self.task.name} task has none")
        if self.is_task and self.train.variable_bptt:
            raise ConfigError(f"train.variable_bptt cuts a token stream into windows; the {self.task.name} task "
                              "trains on whole sequences")
        if self.train.cuda_graphs and self.is_task:
            raise ConfigError(f"train.cuda_graphs captures the language-model step; the {self.task.name} task trains "
                              "uncaptured: set train.cuda_graphs = false")
        if self.train.cuda_graphs and self.train.variable_bptt:
            raise ConfigError("train.cuda_graphs replays one window shape; train.variable_bptt draws a length per "
                              "window: set one of them to false")
        if self.train.cuda_graphs and self.model.output not in ("softmax", "auto"):
            raise ConfigError(f"train.cuda_graphs cannot capture model.output = {self.model.output} (sampled and nce "
                              "draw their candidates on the host, adaptive picks rows of data-dependent size): use "
                              "softmax, or set train.cuda_graphs = false")

    @property
    def is_task(self) -> bool:
        return self.task.name != "none"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (str/int/float/bool/list/None) for checkpoints and JSON: ``version`` and one
        table per section."""
        out: dict[str, Any] = {"version": CONFIG_VERSION}
        for name in SECTIONS:
            section = getattr(self, name)
            out[name] = {f.name: _plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "config") -> Config:
        """Validate and build; a config of an older version (no ``version``: 1) is migrated first."""
        raw = migrate(raw, source)
        unknown = set(raw) - set(SECTIONS)
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(f"{source}: unknown section {name!r}{_did_you_mean(name, SECTIONS)} "
                              f"(sections: {', '.join(SECTIONS)})")
        sections = {}
        for name, section_cls in SECTIONS.items():
            values = raw.get(name, {})
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source}: [{name}] must be a table of keys, got {values!r}")
            known = {f.name for f in dataclasses.fields(section_cls)}
            for key in values:
                if key not in known:
                    raise ConfigError(f"{source}: unknown key '{name}.{key}'{_hint(name, key, known)}")
            sections[name] = section_cls(**values)
        return cls(**sections)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """A copy with ``{"section.key": value}`` applied and validated."""
        raw = self.to_dict()
        for dotted, value in overrides.items():
            section, key = _split_key(dotted)
            raw.setdefault(section, {})[key] = value
        return Config.from_dict(raw, source="--set")

    def to_toml(self) -> str:
        raw = self.to_dict()
        lines = [f"version = {raw.pop('version')}", ""]
        for name, values in raw.items():
            lines.append(f"[{name}]")
            lines.extend(f"{key} = {_toml_value(v)}" for key, v in values.items() if v is not None)
            lines.append("")
        return "\n".join(lines)


# ---------------------------------------------------------------- versions


def rename_key(raw: dict[str, Any], old: str, new: str) -> None:
    """A migration step's tool: move ``section.key`` ``old`` to ``new`` in raw tables, in place."""
    old_section, old_key = _split_key(old)
    table = raw.get(old_section)
    if isinstance(table, dict) and old_key in table:
        new_section, new_key = _split_key(new)
        raw.setdefault(new_section, {})[new_key] = table.pop(old_key)


def _split_model_dropout(raw: dict[str, Any], base: Mapping[str, Any]) -> None:
    """Version 3: model.dropout (Zaremba's non-recurrent dropout) became three keys of [regularization] with
    the same meaning and the same masks: the inputs (language models only: task models had none), between
    layers, and before the output layer."""
    model = raw.get("model")
    if not isinstance(model, dict) or "dropout" not in model:
        return
    rate = model.pop("dropout")
    task = {**base.get("task", {}), **raw.get("task", {})}  # the task may come from the preset the file names
    is_task = task.get("name", "none") != "none"
    sites = ("hidden_dropout", "output_dropout") if is_task else ("input_dropout", "hidden_dropout", "output_dropout")
    table = raw.setdefault("regularization", {})
    for site in sites:
        table[site] = rate


# MIGRATIONS[v] turns the raw tables of a version-v config into version v + 1, in place; ``base`` holds the
# (current) tables of the preset the config starts from, if any, for steps that depend on them.
MIGRATIONS: dict[int, Callable[[dict[str, Any], Mapping[str, Any]], None]] = {
    1: lambda raw, base: None,  # version 2 starts the numbering; its keys are version 1's
    2: _split_model_dropout,
}

# Keys that moved, for the error a current-version config or --set gets when it names the old place.
MOVED_KEYS = {
    "model.dropout": "regularization.input_dropout, regularization.hidden_dropout and "
                     "regularization.output_dropout (each the same rate; regularization.dropout_kind = standard)",
}


def migrate(raw: Mapping[str, Any], source: str = "config", base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Raw tables of any known version -> raw tables of ``CONFIG_VERSION``, without ``version``. ``base``:
    the tables of a preset the config is merged onto (read, never changed)."""
    raw = {key: dict(value) if isinstance(value, Mapping) else value for key, value in raw.items()}
    version = raw.pop("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{source}: version must be a whole number >= 1, got {version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(f"{source}: config version {version} is newer than this rnnlab reads ({CONFIG_VERSION}); "
                          "upgrade rnnlab")
    for step in range(version, CONFIG_VERSION):
        MIGRATIONS[step](raw, base or {})
    return raw


# ---------------------------------------------------------------- loading


def preset_names() -> list[str]:
    folder = resources.files("rnnlab.presets")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_preset(name: str) -> dict[str, Any]:
    """A preset's raw tables, with its one-line ``description`` under the key ``description``."""
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}{_did_you_mean(name, names)} (presets: {', '.join(names)})")
    text = resources.files("rnnlab.presets").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.lr=0.5", "data.level=char"]`` -> ``{"train.lr": 0.5, "data.level": "char"}``.

    A value is read as a TOML value when it parses as one (numbers, booleans, arrays, quoted
    strings) and kept as a bare string otherwise; string fields always take the raw text.
    """
    out: dict[str, Any] = {}
    for item in items:
        dotted, sep, text = item.partition("=")
        dotted = dotted.strip()
        if not sep or not dotted:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        section, key = _split_key(dotted)
        section_cls = SECTIONS.get(section)
        if section_cls is None:
            raise ConfigError(f"--set {item!r}: unknown section {section!r}{_did_you_mean(section, SECTIONS)}")
        hints = typing.get_type_hints(section_cls)
        if key not in hints:
            raise ConfigError(f"--set {item!r}: unknown key '{dotted}'{_hint(section, key, hints)}")
        text = text.strip()
        if hints[key] is str:
            out[dotted] = text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" else text
        else:
            out[dotted] = _parse_toml_value(text)
    return out


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
) -> Config:
    """Defaults -> preset (``ptb-small`` when neither a preset nor a file is named) or file -> overrides.

    A config file may name a preset to start from with a top-level ``preset = "ptb-medium"``.
    """
    if preset is not None and config_file is not None:
        raise ConfigError("give either --preset or --config, not both")
    if config_file is not None:
        raw = read_config_file(config_file)
        source = str(config_file)
        base_name = raw.pop("preset", None)
        if base_name is not None:
            if not isinstance(base_name, str):
                raise ConfigError(f"{source}: preset must be a preset name, got {base_name!r}")
            # The file migrates on its own (a preset is always current), then lands on the preset.
            preset_tables = read_preset(base_name)
            raw = {"version": CONFIG_VERSION, **_merge(preset_tables, migrate(raw, source, preset_tables))}
    else:
        raw = read_preset(preset or DEFAULT_PRESET)
        raw.setdefault("version", CONFIG_VERSION)  # presets ship with this code: always current
        source = f"preset {preset or DEFAULT_PRESET}"
    raw.pop("description", None)
    config = Config.from_dict(raw, source=source)
    parsed = parse_overrides(overrides)
    return config.with_overrides(parsed) if parsed else config


def describe_keys() -> list[str]:
    """One line per key: ``section.key = default  help [choices]`` (for --help and the docs)."""
    lines = []
    for name, section_cls in SECTIONS.items():
        for f in dataclasses.fields(section_cls):
            default = "none" if f.default is None else _toml_value(_plain(f.default))
            choices = f.metadata.get("choices")
            extra = f" [{' | '.join(choices)}]" if choices else ""
            lines.append(f"{name}.{f.name} = {default}: {f.metadata.get('help', '')}{extra}")
    return lines


# ---------------------------------------------------------------- validation helpers


def _validate_section(section: str, obj: Any) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{section}.{f.name}"
        value = _coerce(key, getattr(obj, f.name), hints[f.name])
        object.__setattr__(obj, f.name, value)
        if value is None:
            continue
        # A list-valued key's bounds and choices hold for each of its items.
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for index, item in items:
            _check_value(key if index is None else f"{key}[{index}]", item, f.metadata)


def _check_value(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta["low_open"] and value == low)):
        raise ConfigError(f"{key} must be {'>' if meta['low_open'] else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (meta["high_open"] and value == high)):
        raise ConfigError(f"{key} must be {'<' if meta['high_open'] else '<='} {high}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be finite, got {value!r}")


_TYPE_WORDS = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(key, value, args[0])
    if origin is tuple:
        item_types = typing.get_args(tp)
        if len(item_types) == 2 and item_types[1] is Ellipsis:  # tuple[int, ...]: a list of any length
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{key} expects a list ([...]) of {_TYPE_WORDS[item_types[0]]}, got {value!r}")
            return tuple(_coerce(f"{key}[{i}]", v, item_types[0]) for i, v in enumerate(value))
        if not isinstance(value, (list, tuple)) or len(value) != len(item_types):
            raise ConfigError(f"{key} expects a list of {len(item_types)} numbers, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, t) for i, (v, t) in enumerate(zip(value, item_types)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} expects a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in this module, not user input


def check_device_name(device: str, what: str = "device") -> None:
    """auto, cpu, cuda or cuda:N; anything else is a ConfigError naming ``what``."""
    prefix, _, index = device.partition(":")
    if not (device in ("auto", "cpu", "cuda") or (prefix == "cuda" and index.isdigit())):
        raise ConfigError(f"{what} must be auto, cpu, cuda or cuda:N, got {device!r}")


def _split_key(dotted: str) -> tuple[str, str]:
    section, sep, key = dotted.partition(".")
    if not sep or not key:
        raise ConfigError(f"expected section.key (for example train.lr), got {dotted!r}")
    return section, key


def _hint(section: str, key: str, known: Iterable[str]) -> str:
    moved = MOVED_KEYS.get(f"{section}.{key}")
    if moved:
        return f" (it moved: write {moved})"
    return _did_you_mean(key, known, prefix=section + ".")


def _did_you_mean(name: str, options: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _parse_toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
