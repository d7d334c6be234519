"""The trainer: epochs of truncated-BPTT windows, validation, schedules, checkpoints and metrics.

It knows nothing of gate maths (the model owns that) and prints nothing: progress goes to
``Observer`` objects (the CLI's progress bar is one) and to ``metrics.jsonl``.

Run directory layout::

    RUN_DIR/config.toml     the resolved config (usable with --config)
    RUN_DIR/metrics.jsonl   train / eval records, one JSON object per line
    RUN_DIR/tokenizer.model the SentencePiece model, at data.level = subword (checkpoints hold it too)
    RUN_DIR/best.pt         lowest validation loss so far (used for the final test)
    RUN_DIR/latest.pt       where training stands: resume from it with --resume RUN_DIR
    RUN_DIR/tensorboard/    when train.tensorboard = true
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from rnnlab.config import RESUMABLE_KEYS, Config, check_device_name
from rnnlab.data.corpus import Corpus
from rnnlab.errors import CheckpointError, ConfigError, RnnlabError
from rnnlab.io import atomic_write, atomic_write_text
from rnnlab.nn.output import FullSoftmax
from rnnlab.nn.recurrent import State, map_state
from rnnlab.training.checkpoint import BEST, LATEST, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from rnnlab.training.distributed import Ranks
from rnnlab.training.graphs import CapturedStep
from rnnlab.training.loop import SkippedSteps, StepResult, train_step
from rnnlab.training.metrics import MetricsLog, truncate_metrics
from rnnlab.training.optim import LrSchedule, load_optimizer_state, make_optimizer, scaled_lr
from rnnlab.training.workloads import Metrics, build_workload

log = logging.getLogger(__name__)

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"


class TrainingDiverged(RnnlabError):
    """The loss became NaN or infinite; earlier checkpoints are left untouched."""


class Observer:
    """Hooks for whoever shows progress. Every method is optional."""

    def on_start(self, total_steps: int, done_steps: int) -> None: ...

    def on_step(self, step: int, tokens: int) -> None: ...

    def on_record(self, record: dict[str, Any]) -> None: ...

    def on_eval_window(self, split: str, done: int, total: int) -> None: ...

    def on_end(self) -> None: ...


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resume continues exactly."""

    epoch: int = 1  # the epoch being trained (1-based)
    step: int = 0  # optimizer steps taken
    window: int = 0  # next BPTT window within the epoch
    best_valid_loss: float = math.inf
    last_valid_step: int = -1
    epoch_valid_losses: list[float] = field(default_factory=list)  # NT-ASGD's trigger reads them
    averaging_from: int = -1  # the step NT-ASGD started averaging at (-1: not started)
    skipped_steps: int = 0  # steps whose non-finite loss or gradient was not applied
    nonfinite_run: int = 0  # of them, in a row up to now
    nonfinite_first: int = -1  # the first step of that run
    nonfinite_params: list[str] = field(default_factory=list)  # the parameters at fault at that step


@dataclass
class RunResult:
    run_dir: Path
    best_checkpoint: Path
    metrics: Path
    stopped_by: str  # "epochs", "max_steps", "max_minutes" or "interrupted"
    steps: int
    test: Metrics | None  # the best checkpoint on the test split (None when interrupted)
    summary: str  # one line describing the test result


def resolve_device(name: str) -> torch.device:
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device = {name!r} but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device = {name!r} but only {torch.cuda.device_count()} CUDA devices exist")
    return device


class Trainer:
    def __init__(
        self,
        config: Config,
        run_dir: str | Path,
        *,
        corpus: Corpus | None = None,
        observers: tuple[Observer, ...] = (),
        resume: bool = False,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = resolve_device(config.train.device)
        # Under torchrun: this process's rank (one process: rank 0 of 1, and nothing below changes).
        self.ranks = Ranks.from_environment(self.device, config.train.distributed_timeout)
        if self.ranks.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.ranks.local_rank)
            torch.cuda.set_device(self.device)
        self.observers = observers if self.ranks.is_main else ()  # progress and metrics come from rank 0
        self.stop_requested = False

        train_cfg = config.train
        torch.manual_seed(train_cfg.seed)
        # The model is built on the CPU from the seed, then moved: the same seed, the same weights.
        self.workload = build_workload(config, self.device, corpus, self.ranks)
        self.model = self.workload.model
        self.train_model: torch.nn.Module = self.model  # what train_step calls: the model, or its DDP wrapper
        if self.ranks.active:
            # Ranks share the weights, not the dropout masks or sampled candidates of their own columns.
            torch.manual_seed(train_cfg.seed + 7919 * self.ranks.rank)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # Adaptive softmax leaves a tail cluster without gradient when no target falls in it.
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids,
                                                       find_unused_parameters=config.model.output == "adaptive")
        self.optimizer = make_optimizer(self.model.parameters(), train_cfg)
        self._step = self._make_step()
        self.schedule = LrSchedule(self.optimizer, train_cfg)
        self.progress = Progress()
        self.state: State | None = None
        self.averaged: AveragedModel | None = None  # NT-ASGD's running average, once it has started
        self.windows_per_epoch = self.workload.windows_per_epoch
        self._probe = None
        if config.diagnostics.every_steps:  # drawn now, so a probe that cannot be built fails at once
            self._probe = self.workload.probe_batch(config.diagnostics.batch, config.diagnostics.length)
        self._loss_sum = torch.zeros((), device=self.device)
        self._token_sum = torch.zeros((), dtype=torch.long, device=self.device)
        self._last_grad_norm = torch.zeros((), device=self.device)
        self._log_clock = 0.0
        self._log_tokens = 0
        self._saved_at = time.monotonic()  # when latest.pt was last written (checkpoint_every_minutes)

        main = self.ranks.is_main  # only rank 0 writes the run directory
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.run_dir)
        if resume:
            self._restore(load_checkpoint(self.run_dir / LATEST))
            if main:
                truncate_metrics(self.run_dir / METRICS_FILE, self.progress.step)
        # Skipped steps are counted on the device and read at train records and saves: no per-step sync.
        names = tuple(name for name, _ in self.model.named_parameters())  # DDP's order, without "module."
        p = self.progress
        self._skips = SkippedSteps(self.device, names, p.step, p.nonfinite_run, p.nonfinite_first, p.nonfinite_params)
        self.metrics: MetricsLog | None = None
        if main:
            atomic_write_text(self.run_dir / CONFIG_FILE, config.to_toml())
            for name, content in self.workload.run_files().items():
                atomic_write(self.run_dir / name, lambda handle, content=content: handle.write(content))
            tensorboard_dir = self.run_dir / "tensorboard" if train_cfg.tensorboard else None
            self.metrics = MetricsLog(self.run_dir / METRICS_FILE, tensorboard_dir)

    # ------------------------------------------------------------------ public

    @property
    def total_steps(self) -> int:
        """Planned steps (with variable-length windows, the count at the mean length: an estimate)."""
        planned = self.config.train.epochs * self.windows_per_epoch
        max_steps = self.config.train.max_steps
        return min(planned, max_steps) if max_steps else planned

    def fit(self) -> RunResult:
        train_cfg = self.config.train
        for obs in self.observers:
            obs.on_start(self.total_steps, self.progress.step)
        started = time.monotonic()
        self._log_clock = time.perf_counter()
        self.model.train()
        try:
            while True:
                stopped_by = self._limit_reached(started)
                if stopped_by:
                    break
                self._train_one_window()
                if self.progress.window == self.workload.windows_in_epoch(self.progress.epoch):
                    self._end_epoch()
                elif train_cfg.eval_every_steps and self.progress.step % train_cfg.eval_every_steps == 0:
                    self._validate()
            if stopped_by == "interrupted":
                self._save(self.run_dir / LATEST)  # where we are, mid-epoch, with the carried state
                return self._result(stopped_by, test=None)
            if stopped_by != "epochs":
                if self.progress.last_valid_step != self.progress.step:
                    # A stop between epochs: validate for the record and for best.pt, but keep the
                    # schedule out of it, so the training of a resumed run matches an uninterrupted one.
                    self._validate()
                self._save(self.run_dir / LATEST)
            test = self._test_best()
            return self._result(stopped_by, test=test)
        finally:
            if self.metrics is not None:
                self.metrics.close()
                remove_stale_temp_files(self.run_dir)
            for obs in self.observers:
                obs.on_end()

    def request_stop(self) -> None:
        """Ask for a clean stop after the current step (the CLI calls this on Ctrl-C)."""
        self.stop_requested = True

    # ------------------------------------------------------------------ steps and epochs

    def _train_one_window(self) -> None:
        train_cfg = self.config.train
        inputs, targets = self.workload.window(self.progress.epoch, self.progress.window)
        state = self.state if self.workload.carries_state else None
        # AWD-LSTM's per-token loss: a window of length L takes a step of lr * L / bptt. A loss summed over
        # the window ("sequences") grows with L by itself.
        scale_lr = train_cfg.variable_bptt and train_cfg.loss_average == "tokens"
        lr_scale = inputs.size(0) / train_cfg.bptt if scale_lr else 1.0
        with scaled_lr(self.optimizer, lr_scale):
            result = self._step(inputs, targets, state)
        self.state = result.state if self.workload.carries_state else None
        self.progress.step += 1
        self.progress.window += 1
        # The step's sums were added on the device (_account); only NT-ASGD's average reads the skip flag.
        if self.averaged is not None and bool(result.applied):
            self.averaged.update_parameters(self.model)
        processed = inputs.shape[0] * inputs.shape[1]  # time steps x sequences
        self._log_tokens += processed
        if self.progress.step % train_cfg.log_every == 0:
            self._log_train()
        every = self.config.diagnostics.every_steps
        if every and self.progress.step % every == 0:
            self._log_diagnostics()
        self._maybe_checkpoint()
        for obs in self.observers:
            obs.on_step(self.progress.step, processed)

    def _make_step(self) -> Callable[[torch.Tensor, torch.Tensor, State | None], StepResult]:
        """train_step with this run's settings, or its CUDA-graph replay (train.cuda_graphs)."""
        train_cfg = self.config.train
        cuda = self.device.type == "cuda"
        if train_cfg.precision == "bf16" and not (cuda and torch.cuda.is_bf16_supported(including_emulation=False)):
            raise ConfigError("train.precision = bf16 needs a CUDA device with bfloat16 (Ampere or newer); this run is "
                              f"on {self.device}" + ("" if cuda else " (bfloat16 on CPUs: not supported yet)"))
        options = dict(clip_norm=train_cfg.clip_norm, loss_average=train_cfg.loss_average,
                       autocast=torch.bfloat16 if train_cfg.precision == "bf16" else None)
        if not train_cfg.cuda_graphs:
            def step(inputs: torch.Tensor, targets: torch.Tensor, state: State | None) -> StepResult:
                result = train_step(self.train_model, self.optimizer, inputs, targets, state, **options)
                self._account(result)
                return result

            return step
        if not cuda:
            raise ConfigError(f"train.cuda_graphs needs a CUDA device; this run is on {self.device}")
        if self.ranks.active:
            raise ConfigError("train.cuda_graphs runs in one process; under torchrun set it to false")
        output = getattr(self.model, "output", None)
        if output is not None and type(output) is not FullSoftmax:  # model.output = auto may pick sampled
            raise ConfigError(f"train.cuda_graphs captures the full softmax only; model.output picked "
                              f"{type(output).__name__} here: set model.output = softmax")
        return CapturedStep(self.model, self.optimizer, **options, after=self._account)

    def _account(self, result: StepResult) -> None:
        """Add a step to the sums behind the next train record, on the device and in place (a captured step
        replays this with it); a skipped step adds nothing but its count."""
        self._loss_sum += torch.where(result.applied, result.loss, 0.0)
        self._token_sum += torch.where(result.applied, result.tokens, 0)
        self._last_grad_norm.copy_(torch.where(result.applied, result.grad_norm, self._last_grad_norm))
        self._skips.update(result)

    def _check_skipped(self) -> None:
        """Steps whose loss or gradient was not finite were not applied: log them since the last look, and stop
        once too many came in a row. Runs at train records, validations and saves, where the loop reads the device
        anyway."""
        progress, seen = self.progress, self._skips.read()
        progress.skipped_steps += seen.skipped
        progress.nonfinite_run, progress.nonfinite_first, progress.nonfinite_params = (
            seen.run, seen.run_first, seen.run_faults)
        if seen.skipped:
            self._emit({"event": "skipped", "epoch": progress.epoch, "step": progress.step, "skipped": seen.skipped,
                        "in_a_row": seen.longest, "first": seen.longest_first, "nonfinite": seen.faults[:8]})
        if seen.longest >= self.config.train.max_nonfinite_steps:
            self._diverged(f"{seen.longest} steps in a row had a non-finite loss or gradient (the first at step "
                           f"{seen.longest_first}, in {', '.join(seen.faults[:3])}); none was applied")

    def _maybe_checkpoint(self) -> None:
        """latest.pt mid-epoch, by wall time or by steps, so a kill loses little."""
        if self.progress.window == self.workload.windows_in_epoch(self.progress.epoch):
            return  # the epoch end right after saves; a save here would resume past the epoch's last window
        train_cfg = self.config.train
        by_steps = train_cfg.checkpoint_every_steps and self.progress.step % train_cfg.checkpoint_every_steps == 0
        by_time = bool(train_cfg.checkpoint_every_minutes
                       and time.monotonic() - self._saved_at >= 60 * train_cfg.checkpoint_every_minutes)
        if self.ranks.active and train_cfg.checkpoint_every_minutes:
            (by_time,) = self.ranks.any(by_time)  # clocks differ: every rank saves when one is due
        if by_steps or by_time:
            with self._not_training_time():
                self._save(self.run_dir / LATEST)

    def _log_train(self) -> None:
        self._check_skipped()
        loss_sum, token_sum = self._loss_sum.item(), float(self._token_sum.item())
        now = time.perf_counter()  # after the reads: the device has finished the steps being counted
        # Every rank logs at the same steps: the record sums all ranks' columns.
        loss_sum, tokens = self.ranks.sum([loss_sum, token_sum])
        tokens = int(tokens)
        loss = loss_sum / max(tokens, 1)
        if not math.isfinite(loss):
            self._diverged(f"the training loss is {loss}")
        record = {
            "event": "train",
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            **self.workload.train_metrics(loss),
            "lr": self.schedule.lr,
            "grad_norm": float(self._last_grad_norm.item()),
            "tokens_per_s": self.ranks.world * self._log_tokens / max(now - self._log_clock, 1e-9),
        }
        self._emit(record)
        self._loss_sum.zero_()
        self._token_sum.zero_()
        self._log_tokens = 0
        self._log_clock = time.perf_counter()

    def _diverged(self, what: str) -> None:
        saved = [name for name in (BEST, LATEST) if (self.run_dir / name).is_file()]
        kept = f"{' and '.join(saved)} in {self.run_dir} hold the last good state" if saved else \
            "no checkpoint had been written yet"
        raise TrainingDiverged(f"training diverged: {what} at step {self.progress.step} (epoch "
                               f"{self.progress.epoch}); {kept}. Lower train.lr or set train.clip_norm")

    def _log_diagnostics(self) -> None:
        from rnnlab.diagnostics import summary_records

        with self._not_training_time():
            for record in summary_records(self.model, *self._probe):
                self._emit({"event": "diagnostics", "epoch": self.progress.epoch, "step": self.progress.step,
                            **record})

    @contextlib.contextmanager
    def _not_training_time(self) -> Iterator[None]:
        """A block whose time tokens/s leaves out. It first waits for the device: the steps still queued there
        are training time (the training loop itself never waits)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        paused = time.perf_counter()
        try:
            yield
        finally:
            self._log_clock += time.perf_counter() - paused

    def _end_epoch(self) -> None:
        valid = self._validate()
        self.schedule.epoch_end(valid["loss"])
        self._maybe_start_averaging(valid["loss"])
        self.progress.epoch += 1
        self.progress.window = 0
        self.state = None  # each epoch reads the columns from their beginning again
        with self._not_training_time():
            self._save(self.run_dir / LATEST)

    def _maybe_start_averaging(self, valid_loss: float) -> None:
        """NT-ASGD (Merity et al. 2017): once this epoch's validation loss is worse than the best of all
        but the last ``nonmono`` epochs, average the weights from here on."""
        history = self.progress.epoch_valid_losses  # the earlier epochs' losses, as AWD-LSTM keeps them
        nonmono = self.config.train.nonmono
        if (self.config.train.averaging == "nonmono" and self.averaged is None and len(history) > nonmono
                and valid_loss > min(history[:-nonmono])):
            self.averaged = AveragedModel(self.model)  # averages from the current weights on
            self.progress.averaging_from = self.progress.step
            log.info("NT-ASGD: averaging the weights from step %d on", self.progress.step)
        history.append(valid_loss)

    @property
    def evaluated_model(self) -> torch.nn.Module:
        """What validation, best.pt and test see: the averaged weights once NT-ASGD averages, else the model."""
        return self.averaged.module if self.averaged is not None else self.model

    def _validate(self) -> Metrics:
        self._check_skipped()  # a run of skipped steps is named before the validation loss it caused
        with self._not_training_time():
            result = self._evaluate("valid")
            if not math.isfinite(result["loss"]):
                self._diverged(f"the validation loss is {result['loss']}")
            self.progress.last_valid_step = self.progress.step
            if result["loss"] < self.progress.best_valid_loss:
                self.progress.best_valid_loss = result["loss"]
                self._save(self.run_dir / BEST)
        return result

    def _evaluate(self, split: str) -> Metrics:
        def on_window(done: int, total: int) -> None:
            for obs in self.observers:
                obs.on_eval_window(split, done, total)

        result = self.workload.evaluate(split, on_window, model=self.evaluated_model)
        # After an epoch's last window the counter already names the next epoch.
        epoch = self.progress.epoch - 1 if self.progress.window == 0 and self.progress.step else self.progress.epoch
        self._emit({"event": "eval", "split": split, "epoch": epoch, "step": self.progress.step, **result})
        return result

    def _test_best(self) -> Metrics:
        self.evaluated_model.load_state_dict(load_checkpoint(self.run_dir / BEST)["model"])
        return self._evaluate("test")

    def _limit_reached(self, started: float) -> str | None:
        train_cfg = self.config.train
        if self.progress.epoch > train_cfg.epochs:
            return "epochs"
        out_of_time = bool(train_cfg.max_minutes and time.monotonic() - started >= 60 * train_cfg.max_minutes)
        stop = self.stop_requested
        if self.ranks.active:  # a signal or a clock on one rank stops every rank at the same step
            stop, out_of_time = self.ranks.any(stop, out_of_time)
        if stop:
            return "interrupted"
        if train_cfg.max_steps and self.progress.step >= train_cfg.max_steps:
            return "max_steps"
        if out_of_time:
            return "max_minutes"
        return None

    def _emit(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write(record)
        for obs in self.observers:
            obs.on_record(record)

    def _result(self, stopped_by: str, test: Metrics | None) -> RunResult:
        summary = f"test {self.workload.summary(test)}" if test is not None else "no test: interrupted"
        return RunResult(self.run_dir, self.run_dir / BEST, self.run_dir / METRICS_FILE, stopped_by,
                         self.progress.step, test, summary)

    # ------------------------------------------------------------------ checkpoints

    def _save(self, path: Path) -> None:
        self._write_checkpoint(path)
        self.ranks.barrier()  # no rank reads a checkpoint (best.pt for the test) before rank 0 has written it
        if path.name == LATEST:
            self._saved_at = time.monotonic()
            keep = self.config.train.keep_checkpoints
            if keep and self.ranks.is_main:
                stamped = self.run_dir / f"step-{self.progress.step:08d}.pt"
                stamped.unlink(missing_ok=True)
                try:
                    os.link(path, stamped)  # the same bytes, no second write
                except OSError:
                    shutil.copyfile(path, stamped)
                for old in sorted(self.run_dir.glob("step-*.pt"))[:-keep]:
                    old.unlink()

    def _write_checkpoint(self, path: Path) -> None:
        # Never let a diverged model overwrite a good checkpoint. Non-finite steps were skipped (the sums hold only
        # applied ones): too many in a row stop here, before anything is written.
        self._check_skipped()
        # An update can make weights non-finite with finite gradients (an infinite learning rate): never save those.
        bad = [name for name, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            self._diverged(f"the weights are not finite ({', '.join(bad[:3])})")
        # Each rank's own RNG and carried state (its columns' state), for an exact resume at the same world size.
        per_rank = self.ranks.gather({"rng": rng_state(), "carried_state": map_state(lambda s: s.cpu(), self.state)})
        if not self.ranks.is_main:
            return
        # best.pt holds the evaluated (averaged, under NT-ASGD) weights as "model": eval and generate
        # read those; the raw training weights and the running average travel for --resume.
        save_checkpoint(path, {
            "world_size": self.ranks.world,
            "output_layer": self._output_layer_name(),  # what model.output = auto picked (None: a task model)
            "ranks": per_rank,  # [{"rng", "carried_state"}] per rank: one process writes one entry
            "config": self.config.to_dict(),
            **self.workload.checkpoint_extras(),
            "model": (self.evaluated_model if path.name == BEST else self.model).state_dict(),
            "averaged": self.averaged.state_dict() if self.averaged is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "progress": asdict(self.progress),
            # The partial sums behind the next train record, so it reads the same after a resume.
            "accumulators": {"loss_sum": self._loss_sum.item(), "token_sum": int(self._token_sum.item())},
        })

    def _output_layer_name(self) -> str | None:
        output = getattr(self.model, "output", None)  # a language model's output layer; task models have a readout
        return type(output).__name__ if output is not None else None

    def _restore(self, payload: dict[str, Any]) -> None:
        saved_config = Config.from_dict(payload["config"], source="checkpoint config")
        if _without_resumable(saved_config) != _without_resumable(self.config):
            raise CheckpointError(f"{self.run_dir} was trained with another config; a resume may change "
                                  f"only {', '.join(sorted(RESUMABLE_KEYS))}")
        self.workload.check_resume(payload, str(self.run_dir))
        trained_with, here = payload.get("output_layer"), self._output_layer_name()
        if trained_with and here and trained_with != here:
            raise CheckpointError(f"{self.run_dir} trained its output layer as {trained_with}, but model.output = "
                                  f"{self.config.model.output} picks {here} on {self.device.type}: resume it on the "
                                  "same kind of device, or train with an explicit model.output")
        self.model.load_state_dict(payload["model"])
        if payload.get("averaged") is not None:
            self.averaged = AveragedModel(self.model)
            self.averaged.load_state_dict(payload["averaged"])
        load_optimizer_state(self.optimizer, payload["optimizer"])
        self.schedule.load_state_dict(payload["schedule"])
        self.progress = Progress(**payload["progress"])
        world = payload.get("world_size", 1)
        if world != self.ranks.world:
            raise CheckpointError(f"{self.run_dir} was trained by {world} process(es); resume it with the same number "
                                  f"(this is {self.ranks.world})")
        # Checkpoints written before per-rank entries kept rng and carried_state at the top level.
        mine = payload["ranks"][self.ranks.rank] if "ranks" in payload else payload
        self.state = map_state(lambda s: s.to(self.device), mine["carried_state"])
        set_rng_state(mine["rng"])
        # Absent from checkpoints written before the partial sums were saved: start the sums afresh.
        sums = payload.get("accumulators", {"loss_sum": 0.0, "token_sum": 0})
        self._loss_sum.fill_(sums["loss_sum"])
        self._token_sum.fill_(sums["token_sum"])
        # tokens_per_s counts from this process's start: tokens trained before the stop took time not measured here
        self._log_tokens = 0
        log.info("resuming %s at epoch %d, step %d", self.run_dir, self.progress.epoch, self.progress.step)


def remove_stale_temp_files(run_dir: Path) -> None:
    """Delete what an interrupted atomic save left behind (``.NAME.XXXX.tmp``, checkpoint-sized)."""
    for stale in run_dir.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def _without_resumable(config: Config) -> dict[str, Any]:
    raw = config.to_dict()
    for dotted in RESUMABLE_KEYS:
        section, key = dotted.split(".")
        raw[section].pop(key, None)
    return raw
