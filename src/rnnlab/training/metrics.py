"""metrics.jsonl (one JSON object per line) and, optionally, TensorBoard with the same records."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError
from rnnlab.io import atomic_write_text, strict_json


class MetricsLog:
    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self._file = self.path.open("a", encoding="utf-8")
        self._tensorboard = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._file.close()
                raise ConfigError("train.tensorboard = true needs the tensorboard package: "
                                  "pip install 'rnnlab[tensorboard]'") from None
            self._tensorboard = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(strict_json(record) + "\n")  # a NaN loss is written as null: strict JSON
        self._file.flush()
        if self._tensorboard is not None:
            group = record["event"] if record["event"] != "eval" else f"eval_{record['split']}"
            if "layer" in record:
                group = f"{group}/layer{record['layer']}"
            for key, value in record.items():
                if key in ("event", "split", "epoch", "step", "layer") or not isinstance(value, (int, float)):
                    continue
                if isinstance(value, bool) or not math.isfinite(value):
                    continue
                self._tensorboard.add_scalar(f"{group}/{key}", value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _parse(line: str) -> dict[str, Any] | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:  # a line cut short by a crash
        return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [record for line in handle if line.strip() and (record := _parse(line)) is not None]


def truncate_metrics(path: str | Path, step: int) -> None:
    """Prepare metrics.jsonl for a resume from ``step``: drop records logged after it (they would
    appear twice), the test results of the invocation that stopped (the run goes on and will be
    tested at its end) and any line a crash cut short."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        record = _parse(line) if line.strip() else None
        if record is None or record.get("step", 0) > step or record.get("split") == "test":
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    atomic_write_text(path, "".join(kept))
