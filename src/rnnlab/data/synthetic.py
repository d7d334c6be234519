"""Synthetic long-range tasks: the vanishing-gradient benchmarks, generated from seeds.

Each task knows how to sample a batch, how to score a model's per-step predictions, and what a
model that learned nothing scores (its "not learned" baseline). Inputs and targets are time-major.

- ``adding`` (Le et al. 2015 variant of Hochreiter & Schmidhuber 1997): inputs (T, B, 2), a value
  U[0, 1] and a marker; one marker in the first half, one in the second. Target: the sum of the two
  marked values, read at the last step; MSE. Always answering 1 scores 1/6 ~ 0.167.
- ``copy`` (Arjovsky et al. 2016): 10 symbols from {1..8}, T - 1 blanks, a delimiter (9), 10 blanks;
  the model must output blanks and then the 10 symbols. Cross-entropy per step; answering blanks and
  then uniform guesses scores 10 ln 8 / (T + 20).
- ``temporal_order`` (Hochreiter & Schmidhuber 1997, as used by Pascanu et al. 2013): T distractor
  symbols {a, b, c, d} with X or Y placed once in [T/10, 2T/10) and once in [5T/10, 6T/10); classify
  the pair XX / XY / YX / YY at the last step. Chance: accuracy 1/4, cross-entropy ln 4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnnlab.errors import ConfigError
from rnnlab.nn.output import OutputLoss


class Task:
    name: str
    input_vocab: int = 0  # > 0: inputs are token ids for an embedding; 0: real-valued features
    input_dim: int = 0
    output_dim: int
    metric: str  # the task's headline metric, reported next to its baseline
    baseline: dict[str, float]

    min_length = 2

    def __init__(self, length: int) -> None:
        if length < self.min_length:
            raise ConfigError(f"the {self.name} task needs a length of at least {self.min_length}, got {length}")
        self.length = length

    @property
    def steps(self) -> int:
        """Time steps of one sequence."""
        return self.length

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def step_losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(T, B, O) predictions -> (T, B) per-step losses (zero where nothing is scored)."""
        raise NotImplementedError

    def scored_per_sequence(self) -> int:
        return 1

    def loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        losses = self.step_losses(predictions, targets)
        # A fill on the device: torch.tensor(n, device=cuda) would copy from the host and wait for the GPU.
        count = torch.full((), losses.size(1) * self.scored_per_sequence(), dtype=torch.long, device=losses.device)
        return OutputLoss(losses.sum(), count)

    def step_costs(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """cost_t for t = 1..T, averaged over the batch: what diagnostics differentiate."""
        return self.step_losses(predictions, targets).mean(dim=1)

    def evaluate(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Loss per scored step, the headline metric and its baseline, on a whole eval set."""
        raise NotImplementedError


class AddingTask(Task):
    name, input_dim, output_dim, metric = "adding", 2, 1, "mse"
    baseline = {"mse": 1 / 6}

    def sample(self, batch, generator):
        T = self.length
        values = torch.rand(T, batch, generator=generator)
        first = torch.randint(0, T // 2, (batch,), generator=generator)
        second = torch.randint(T // 2, T, (batch,), generator=generator)
        marks = torch.zeros(T, batch)
        columns = torch.arange(batch)
        marks[first, columns] = 1.0
        marks[second, columns] = 1.0
        inputs = torch.stack([values, marks], dim=-1)  # (T, B, 2)
        targets = values[first, columns] + values[second, columns]  # (B,)
        return inputs, targets

    def step_losses(self, predictions, targets):
        losses = torch.zeros(predictions.shape[:2], device=predictions.device, dtype=predictions.dtype)
        losses[-1] = (predictions[-1, :, 0] - targets).pow(2)
        return losses

    def evaluate(self, predictions, targets):
        mse = (predictions[-1, :, 0] - targets).pow(2).mean().item()
        return {"loss": mse, "mse": mse, "baseline_mse": self.baseline["mse"]}


class CopyTask(Task):
    name, input_vocab, output_dim, metric = "copy", 10, 9, "cross_entropy"
    BLANK, DELIMITER, SYMBOLS = 0, 9, 10

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.baseline = {"cross_entropy": self.SYMBOLS * math.log(8) / (length + 20), "accuracy": 1 / 8}

    @property
    def steps(self) -> int:
        return self.length + 2 * self.SYMBOLS

    def sample(self, batch, generator):
        n, T = self.SYMBOLS, self.length
        symbols = torch.randint(1, 9, (n, batch), generator=generator)
        inputs = torch.zeros(T + 2 * n, batch, dtype=torch.long)
        inputs[:n] = symbols
        inputs[T + n - 1] = self.DELIMITER
        targets = torch.zeros(T + 2 * n, batch, dtype=torch.long)
        targets[-n:] = symbols
        return inputs, targets

    def step_losses(self, predictions, targets):
        steps, batch, classes = predictions.shape
        flat = F.cross_entropy(predictions.reshape(-1, classes), targets.reshape(-1), reduction="none")
        return flat.view(steps, batch)

    def scored_per_sequence(self) -> int:
        return self.steps

    def evaluate(self, predictions, targets):
        ce = self.step_losses(predictions, targets).mean().item()
        recalled = predictions[-self.SYMBOLS:].argmax(-1) == targets[-self.SYMBOLS:]
        return {"loss": ce, "cross_entropy": ce, "baseline_cross_entropy": self.baseline["cross_entropy"],
                "accuracy": recalled.float().mean().item(), "baseline_accuracy": self.baseline["accuracy"]}


class TemporalOrderTask(Task):
    name, input_vocab, output_dim, metric = "temporal_order", 6, 4, "accuracy"
    min_length = 10  # the symbols go in [T/10, 2T/10) and [5T/10, 6T/10): both ranges must be non-empty
    X, Y = 4, 5
    baseline = {"accuracy": 0.25, "cross_entropy": math.log(4)}

    def sample(self, batch, generator):
        T = self.length
        inputs = torch.randint(0, 4, (T, batch), generator=generator)  # distractors a, b, c, d
        first = torch.randint(T // 10, 2 * T // 10, (batch,), generator=generator)
        second = torch.randint(5 * T // 10, 6 * T // 10, (batch,), generator=generator)
        is_y = torch.randint(0, 2, (2, batch), generator=generator)
        columns = torch.arange(batch)
        inputs[first, columns] = self.X + is_y[0]
        inputs[second, columns] = self.X + is_y[1]
        targets = 2 * is_y[0] + is_y[1]  # XX=0, XY=1, YX=2, YY=3
        return inputs, targets

    def step_losses(self, predictions, targets):
        losses = torch.zeros(predictions.shape[:2], device=predictions.device, dtype=predictions.dtype)
        losses[-1] = F.cross_entropy(predictions[-1], targets, reduction="none")
        return losses

    def evaluate(self, predictions, targets):
        ce = F.cross_entropy(predictions[-1], targets).item()
        accuracy = (predictions[-1].argmax(-1) == targets).float().mean().item()
        return {"loss": ce, "cross_entropy": ce, "baseline_cross_entropy": self.baseline["cross_entropy"],
                "accuracy": accuracy, "baseline_accuracy": self.baseline["accuracy"]}


TASKS: dict[str, type[Task]] = {"adding": AddingTask, "copy": CopyTask, "temporal_order": TemporalOrderTask}


def make_task(name: str, length: int) -> Task:
    try:
        return TASKS[name](length)
    except KeyError:
        raise ValueError(f"unknown task {name!r} (tasks: {', '.join(TASKS)})") from None


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator whose seed depends only on ``parts``: batch k of epoch e is the same batch
    whether or not the run was stopped and resumed in between."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)
