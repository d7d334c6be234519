"""Checkpoints: plain data (state_dicts, config dict, vocabulary, counters, RNG states), written
atomically and read back with ``torch.load(weights_only=True)``, which unpickles no code.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path
from typing import Any

import torch

from rnnlab.config import Config
from rnnlab.data.vocab import Vocabulary
from rnnlab.errors import CheckpointError, RnnlabError
from rnnlab.io import atomic_torch_save
from rnnlab.models.base import RecurrentModel
from rnnlab.nn.stack import multilayer_to_stack_keys
from rnnlab.training.workloads import workload_class

# 1: one multi-layer torch.nn module at model.rnn (keys rnn.weight_ih_l{k}), config without a version.
# 2: the RecurrentStack (keys rnn.layers.{k}.weight_ih_l0), versioned config.
FORMAT_VERSION = 2
BEST = "best.pt"
LATEST = "latest.pt"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_torch_save({"format_version": FORMAT_VERSION, **payload}, path)


def resolve_checkpoint_path(path: str | Path, default_name: str = BEST) -> Path:
    """A checkpoint file, or a run directory (which means its ``default_name``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, default_name: str = BEST) -> dict[str, Any]:
    path = resolve_checkpoint_path(path, default_name)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise CheckpointError(f"{path} does not load as an rnnlab checkpoint: not a PyTorch checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        text = str(exc).strip()
        if "Weights only load failed" in text:
            reason = "it holds pickled objects, not plain data (rnnlab checkpoints are plain data)"
        else:
            reason = text.splitlines()[0][:160] if text else type(exc).__name__
        raise CheckpointError(f"{path} does not load as an rnnlab checkpoint: {reason}") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not an rnnlab checkpoint (no format_version)")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format {payload['format_version']}, newer than this rnnlab "
                              f"reads ({FORMAT_VERSION}); upgrade rnnlab")
    for key in ("config", "model"):
        if key not in payload:
            raise CheckpointError(f"{path} lacks {key!r}; it is not a complete rnnlab checkpoint")
    return upgrade(payload)


def upgrade(payload: dict[str, Any]) -> dict[str, Any]:
    """An older format's payload in today's format, one step at a time (the config migrates itself
    in ``Config.from_dict``)."""
    if payload["format_version"] == 1:
        payload["model"] = multilayer_to_stack_keys(payload["model"], prefix="rnn.")
        payload["format_version"] = 2
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> tuple[RecurrentModel, Config, Vocabulary | None]:
    """Rebuild the model (on the CPU), its config and, for language models, the vocabulary."""
    try:
        config = Config.from_dict(payload["config"], source="checkpoint config")
        vocab = Vocabulary.from_dict(payload["vocab"]) if "vocab" in payload else None
        model = workload_class(config).new_model(config, vocab)
        model.load_state_dict(payload["model"])
    except RnnlabError:
        raise
    except (KeyError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"checkpoint does not rebuild a model: {reason}") from None
    return model, config, vocab


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
