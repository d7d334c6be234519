"""``rnnlab bench``: rnnlab's training throughput against the loop a user would write instead.

The baseline is PyTorch's word_language_model example, written out: nn.Embedding -> nn.LSTM (nn.GRU, nn.RNN)
-> nn.Linear -> log_softmax + NLLLoss, clip_grad_norm_, a manual SGD update over the parameters and
``loss.item()`` every step, with the config's shape (layers, sizes, tying, vocabulary, bptt, batch) and its
non-recurrent dropout rate. rnnlab runs its whole Trainer on the same config (dropout variants, output layers
and skip connections included: whatever ``--set`` chose), on the same token columns and device, in the same
process; the two alternate round by round, so a noisy machine's drift hits both alike. Step 1 of every run is
warm-up and not timed; with train.cuda_graphs, rnnlab's eager warm-up steps and the capture are not timed either
(a one-off cost per run, like the first step's).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per side; on the CPU the process's resident set,
sampled every 5 ms while each side runs (process-wide: an upper bound that includes the data both share).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.config import Config
from rnnlab.data.batching import batchify
from rnnlab.data.corpus import Corpus
from rnnlab.training.graphs import CapturedStep
from rnnlab.training.trainer import Observer, Trainer

BASELINE_CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}


class BaselineModel(nn.Module):
    """The word_language_model example's RNNModel, written out (its init: uniform weights, zero decoder bias)."""

    def __init__(self, cell: str, vocab: int, embedding: int, hidden: int, layers: int, dropout: float,
                 tie: bool, init_range: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, embedding)
        if cell in ("lstm", "gru"):
            self.rnn = getattr(nn, cell.upper())(embedding, hidden, layers, dropout=dropout)
        else:
            self.rnn = nn.RNN(embedding, hidden, layers, nonlinearity=cell[4:], dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab)
        if tie:
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)
        if not tie:
            nn.init.uniform_(self.decoder.weight, -init_range, init_range)

    def forward(self, tokens: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, Any]:
        output, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return F.log_softmax(decoded, dim=1), hidden


def baseline_model(config: Config, vocab: int) -> BaselineModel:
    m, reg = config.model, config.regularization
    if m.layer_sizes[-1] != m.hidden_size:
        raise ValueError("the baseline has layers of one size: model.last_layer_size has no counterpart there")
    return BaselineModel(m.cell, vocab, m.embedding_dim, m.hidden_size, m.num_layers, reg.hidden_dropout,
                         m.tie_weights, m.init_range)


def baseline_run(config: Config, columns: torch.Tensor, vocab: int, steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` timed steps of the example's loop (after one warm-up step)."""
    torch.manual_seed(config.train.seed)
    t = config.train
    model = baseline_model(config, vocab).to(device).train()
    criterion = nn.NLLLoss()
    # The example's loss is the mean per token; for a preset whose loss is summed over the window the update
    # is the same with lr and clip scaled by bptt.
    scale = 1 if t.loss_average == "tokens" else t.bptt
    lr, clip = t.lr * scale, t.clip_norm / scale
    hidden, started = None, 0.0
    for step in range(steps + 1):
        if step == 1:
            _sync(device)
            started = time.perf_counter()
        begin = (step * t.bptt) % (columns.size(0) - 1 - t.bptt)
        data, targets = columns[begin : begin + t.bptt], columns[begin + 1 : begin + 1 + t.bptt].reshape(-1)
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        loss.item()  # the example reads the loss every step
    _sync(device)
    return time.perf_counter() - started


class _StepClock(Observer):
    """The time at each step's end as the host sees it; at the last untimed step and the last step it first waits
    for the device, so the span between them holds all the device's work (the trainer itself never waits)."""

    def __init__(self, untimed: int) -> None:
        self.device = torch.device("cpu")  # the trainer's, once it is built
        self.untimed = untimed
        self.times: list[float] = []
        self.total = 0

    def on_start(self, total_steps: int, done_steps: int) -> None:
        self.total = total_steps

    def on_step(self, step: int, tokens: int) -> None:
        if step in (self.untimed, self.total):
            _sync(self.device)
        self.times.append(time.perf_counter())


def rnnlab_run(config: Config, corpus: Corpus, steps: int) -> tuple[float, Trainer]:
    """Seconds for ``steps`` timed steps of rnnlab's Trainer (after the warm-up), in a scratch directory; and
    the trainer, for whoever wants to look at what it trained."""
    untimed = CapturedStep.WARMUP + 1 if config.train.cuda_graphs else 1  # the eager steps and the capture
    clock = _StepClock(untimed)
    config = config.with_overrides({"train.max_steps": steps + untimed, "train.checkpoint_every_minutes": 0,
                                    "train.eval_every_steps": 0})
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir) / "run", corpus=corpus, observers=(clock,))
        clock.device = trainer.device
        trainer.fit()
    return clock.times[-1] - clock.times[untimed - 1], trainer


class _PeakMemory:
    """The most memory seen while a block runs: CUDA's allocator peak, or the resident set sampled every 5 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _resident_bytes())
            self._stop.wait(0.005)


def _resident_bytes() -> int:
    try:
        import os

        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux: no sampling
        return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class BenchResult:
    config: Config
    steps: int
    rounds: list[dict[str, float]]  # per round: tokens/s of each side
    peak_bytes: dict[str, int]

    @property
    def tokens_per_s(self) -> dict[str, float]:
        return {side: statistics.median(r[side] for r in self.rounds) for side in ("rnnlab", "baseline")}

    @property
    def ratio(self) -> float:
        speed = self.tokens_per_s
        return speed["rnnlab"] / speed["baseline"]

    def to_dict(self) -> dict[str, Any]:
        per_round = [r["rnnlab"] / r["baseline"] for r in self.rounds]
        m, t = self.config.model, self.config.train
        return {"shape": {"cell": m.cell, "layers": m.num_layers, "hidden": m.hidden_size,
                          "embedding": m.embedding_dim, "bptt": t.bptt, "batch": t.batch_size},
                "steps": self.steps, "tokens_per_s": self.tokens_per_s, "ratio": self.ratio,
                "ratio_per_round": per_round, "ratio_spread": [min(per_round), max(per_round)],
                "rounds": self.rounds, "peak_memory_bytes": self.peak_bytes}


def bench(config: Config, corpus: Corpus, device: torch.device, steps: int, rounds: int,
          on_round: Any = None) -> BenchResult:
    """Alternate ``rounds`` rounds of the baseline and of rnnlab, ``steps`` timed steps each."""
    config = config.with_overrides({"train.device": str(device)})
    columns = batchify(corpus.splits["train"], config.train.batch_size).to(device)
    tokens = steps * config.train.bptt * config.train.batch_size
    results, peaks = [], {"rnnlab": 0, "baseline": 0}
    for index in range(rounds):
        with _PeakMemory(device) as memory:
            baseline = baseline_run(config, columns, len(corpus.vocab), steps, device)
        peaks["baseline"] = max(peaks["baseline"], memory.peak)
        with _PeakMemory(device) as memory:
            ours, _ = rnnlab_run(config, corpus, steps)
        peaks["rnnlab"] = max(peaks["rnnlab"], memory.peak)
        results.append({"rnnlab": tokens / ours, "baseline": tokens / baseline})
        if on_round is not None:
            on_round(index + 1, results[-1])
    return BenchResult(config, steps, results, peaks)
