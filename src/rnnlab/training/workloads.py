"""What the trainer trains: a model, the data of each training window, and how to evaluate.

The trainer owns the loop (steps, clipping, schedules, checkpoints, metrics); a workload owns
everything that depends on the kind of problem:

- ``LanguageModelling``: a corpus, truncated-BPTT windows with the state carried between them,
  exact perplexity over whole splits.
- ``SyntheticTask``: adding / copy / temporal order; a fresh seeded batch every step (full BPTT
  over each sequence, no carried state), fixed seeded valid and test sets, the task's metric next
  to its "not learned" baseline.

``workload_class(config)`` is the one place that tells the two apart: training, checkpoints and the
command line all ask it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch

from rnnlab.config import Config
from rnnlab.data.batching import EvalStream, batchify, eval_stream, num_windows, window
from rnnlab.data.corpus import Corpus, load_corpus, load_split
from rnnlab.data.synthetic import Task, make_task, seeded_generator
from rnnlab.data.vocab import Vocabulary
from rnnlab.errors import CheckpointError, ConfigError, RnnlabError
from rnnlab.models.base import RecurrentModel
from rnnlab.models.language_model import RNNLanguageModel
from rnnlab.models.sequence_model import SequenceModel
from rnnlab.nn.mode import evaluating
from rnnlab.nn.output import IGNORE_INDEX
from rnnlab.training.distributed import Ranks
from rnnlab.training.loop import evaluate, evaluate_mc_dropout

Metrics = dict[str, Any]
OOV_WARNING = 0.05  # eval warns when more of a split's tokens than this are out of the vocabulary

log = logging.getLogger(__name__)
EvalProgress = Callable[[int, int], None]


class Workload:
    model: RecurrentModel
    windows_per_epoch: int
    carries_state: bool  # True: the recurrent state flows from one window into the next
    reads_corpus: bool  # False: the data comes from a generator, and data.path / --data mean nothing

    @staticmethod
    def new_model(config: Config, vocab: Vocabulary | None) -> RecurrentModel:
        """A freshly initialised model for ``config`` (draws from the global torch RNG: seed first)."""
        raise NotImplementedError

    @classmethod
    def evaluate_checkpoint(cls, model: RecurrentModel, config: Config, vocab: Vocabulary | None, split: str, *,
                            batch_size: int | None = None, on_window: EvalProgress | None = None,
                            mc_samples: int = 0) -> tuple[Metrics, str]:
        """A checkpoint's model on ``split`` of ``config``'s data: the metrics and one line saying them."""
        raise NotImplementedError

    def window(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of training window ``index`` of ``epoch``, on the model's device."""
        raise NotImplementedError

    def windows_in_epoch(self, epoch: int) -> int:
        """Training windows in ``epoch`` (``windows_per_epoch`` unless their lengths vary)."""
        return self.windows_per_epoch

    def evaluate(self, split: str, on_window: EvalProgress | None = None,
                 model: RecurrentModel | None = None) -> Metrics:
        """Metrics of ``model`` (default: the workload's) on ``valid`` or ``test``; always a ``loss``
        (lower is better)."""
        raise NotImplementedError

    def train_metrics(self, loss: float) -> Metrics:
        return {"loss": loss}

    def summary(self, metrics: Metrics) -> str:
        raise NotImplementedError

    def probe_batch(self, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed held-out batch for diagnostics (``length`` 0 = the natural length)."""
        raise NotImplementedError

    def checkpoint_extras(self) -> dict[str, Any]:
        return {}

    def run_files(self) -> dict[str, bytes]:
        """Files the run directory keeps beside the config (name -> bytes)."""
        return {}

    def check_checkpoint(self, payload: dict[str, Any], where: str) -> None:
        """Refuse a checkpoint whose data no longer matches (its vocabulary: eval, diagnose)."""

    def check_resume(self, payload: dict[str, Any], where: str) -> None:
        """Refuse to resume when the data no longer matches the checkpoint (also its text, for a corpus)."""
        self.check_checkpoint(payload, where)


class LanguageModelling(Workload):
    carries_state = True
    reads_corpus = True

    def __init__(self, config: Config, device: torch.device, corpus: Corpus | None = None,
                 ranks: Ranks | None = None) -> None:
        self.config = config
        self.ranks = ranks = ranks or Ranks()
        self.corpus = corpus if corpus is not None else load_corpus(config.data)
        self.device = device
        self.model = self.new_model(config, self.corpus.vocab).to(device)
        train = config.train
        if train.batch_size % ranks.world:
            raise ConfigError(f"train.batch_size = {train.batch_size} does not split among {ranks.world} processes: "
                              f"make it a multiple of {ranks.world}")
        columns = batchify(self.corpus.splits["train"], train.batch_size)
        share = train.batch_size // ranks.world  # this rank's columns of the same token streams
        self.train_data = columns[:, ranks.rank * share : (ranks.rank + 1) * share].contiguous().to(device)
        self.windows_per_epoch = num_windows(self.train_data.size(0), train.bptt)
        self._schedule: tuple[int, list[tuple[int, int]]] | None = None  # (epoch, [(begin, length), ...])
        eos = self.corpus.vocab.eos_id
        self.streams = {split: eval_stream(self.corpus.splits[split], train.eval_batch_size, eos)
                        for split in ("valid", "test")}

    @staticmethod
    def new_model(config: Config, vocab: Vocabulary | None) -> RNNLanguageModel:
        if vocab is None:
            raise CheckpointError("a language model needs its vocabulary; the checkpoint holds none")
        device = config.train.device
        device_type = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device.split(":")[0]
        return RNNLanguageModel.from_config(config.model, len(vocab), config.regularization,
                                            output_settings=config.output, counts=vocab.counts,
                                            device_type=device_type)

    @classmethod
    def evaluate_checkpoint(cls, model: RecurrentModel, config: Config, vocab: Vocabulary | None, split: str, *,
                            batch_size: int | None = None, on_window: EvalProgress | None = None,
                            mc_samples: int = 0) -> tuple[Metrics, str]:
        ids, oov, sizes = load_split(config.data, vocab, split)
        stream = eval_stream(ids, batch_size or config.train.eval_batch_size, vocab.eos_id)
        if mc_samples:
            torch.manual_seed(config.train.seed)  # the same masks, the same number, every time
            result = evaluate_mc_dropout(model, stream, config.train.bptt, mc_samples, on_window)
        else:
            result = evaluate(model, stream, config.train.bptt, on_window)
        how = f", Monte-Carlo dropout over {mc_samples} samples" if mc_samples else ""
        oov_rate = oov / max(ids.numel(), 1)
        if oov_rate > OOV_WARNING:
            log.warning("warning: %.1f%% of the %s tokens are not in the model's vocabulary (mapped to <unk>): this "
                        "is probably not the text the model was trained for", 100 * oov_rate, split)
        metrics = {"loss": result.loss, "ppl": result.ppl, "tokens": result.tokens,
                   **per_word_and_char(result.loss, result.tokens, sizes), "oov": oov, "oov_rate": oov_rate}
        line = (f"{split} perplexity: {result.ppl:.2f} (loss {result.loss:.4f}, {result.tokens} tokens, "
                f"{oov} out of vocabulary{how}){other_units(metrics, config.data.level)}")
        return {**metrics, "mc_samples": mc_samples}, line

    def window(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.config.train.variable_bptt:
            return window(self.train_data, self.config.train.bptt, index)
        begin, length = self._windows(epoch)[index]
        return self.train_data[begin : begin + length], self.train_data[begin + 1 : begin + 1 + length]

    def windows_in_epoch(self, epoch: int) -> int:
        return len(self._windows(epoch)) if self.config.train.variable_bptt else self.windows_per_epoch

    def _windows(self, epoch: int) -> list[tuple[int, int]]:
        """Variable-length BPTT (Merity et al. 2017): each window's length drawn around bptt from a
        generator seeded by (seed, epoch), so a resumed run cuts the epoch the same way."""
        if self._schedule is None or self._schedule[0] != epoch:
            bptt, rows = self.config.train.bptt, self.train_data.size(0) - 1
            generator = seeded_generator(self.config.train.seed, 4, epoch)
            windows, begin = [], 0
            while begin < rows:
                centre = bptt if float(torch.rand((), generator=generator)) < 0.95 else bptt / 2
                length = max(5, int(centre + 5 * float(torch.randn((), generator=generator))))
                windows.append((begin, min(length, rows - begin)))
                begin += length
            self._schedule = (epoch, windows)
        return self._schedule[1]

    def evaluate(self, split: str, on_window: EvalProgress | None = None,
                 model: RecurrentModel | None = None) -> Metrics:
        model = model if model is not None else self.model
        stream = self.streams[split]
        if self.ranks.active:  # each rank scores its share of the columns; the sums make the exact whole
            inputs, targets = stream.inputs[:, self.ranks.rank :: self.ranks.world], \
                stream.targets[:, self.ranks.rank :: self.ranks.world]
            stream = EvalStream(inputs, targets, int((targets != IGNORE_INDEX).sum()))
        result = evaluate(model, stream, self.config.train.bptt, on_window) if stream.tokens else None
        if self.ranks.active:
            nll, tokens = self.ranks.sum([result.loss * result.tokens if result else 0.0, float(stream.tokens)])
            loss, tokens = nll / tokens, int(tokens)
        else:
            loss, tokens = result.loss, result.tokens
        sizes = self.corpus.sizes.get(split)
        per_unit = per_word_and_char(loss, tokens, sizes) if sizes else {}
        return {"loss": loss, "ppl": math.exp(loss) if loss < 700 else math.inf, "tokens": tokens, **per_unit}

    def train_metrics(self, loss: float) -> Metrics:
        objective = self.model.output.objective
        if objective != "loss":  # a sampled or NCE loss is not a perplexity: logged under its own name
            return {objective: loss}
        return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}

    def summary(self, metrics: Metrics) -> str:
        return (f"perplexity {metrics['ppl']:.2f} (loss {metrics['loss']:.4f}, {metrics['tokens']} tokens)"
                f"{other_units(metrics, self.config.data.level)}")

    def probe_batch(self, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        columns = batchify(self.corpus.splits["valid"], batch)  # (R, batch)
        length = min(length or self.config.train.bptt, columns.size(0) - 1)
        return columns[:length].to(self.device), columns[1 : length + 1].to(self.device)

    def checkpoint_extras(self) -> dict[str, Any]:
        # a subword vocabulary carries its SentencePiece model; the fingerprint guards --resume
        return {"vocab": self.corpus.vocab.to_dict(), "corpus_fingerprint": self.corpus.fingerprint}

    def run_files(self) -> dict[str, bytes]:
        # The SentencePiece model as its own file too, for spm_encode / sentencepiece users outside rnnlab.
        model = self.corpus.vocab.sentencepiece
        return {"tokenizer.model": model} if model is not None else {}

    def check_checkpoint(self, payload: dict[str, Any], where: str) -> None:
        if payload.get("vocab") != self.corpus.vocab.to_dict():
            raise CheckpointError(f"the corpus at {self.config.data.path} no longer gives the vocabulary {where} "
                                  "was trained with")

    def check_resume(self, payload: dict[str, Any], where: str) -> None:
        self.check_checkpoint(payload, where)
        saved = payload.get("corpus_fingerprint")  # absent from checkpoints written before it was kept
        changed = saved and self.corpus.fingerprint and saved != self.corpus.fingerprint
        if changed and not self.config.data.allow_changed:
            raise CheckpointError(f"the corpus files at {self.config.data.path} changed since {where} was saved (the "
                                  "same vocabulary, other text); continue on them anyway with --set "
                                  "data.allow_changed=true")


class SyntheticTask(Workload):
    carries_state = False
    reads_corpus = False
    EVAL_CHUNK = 500  # sequences per forward pass in evaluation

    def __init__(self, config: Config, device: torch.device, corpus: Corpus | None = None,
                 model: RecurrentModel | None = None) -> None:
        self.config = config
        self.device = device
        self.task: Task = make_task(config.task.name, config.task.length)
        self.model = (model if model is not None else self.new_model(config, None)).to(device)
        self.windows_per_epoch = config.task.steps_per_epoch
        seed, n = config.train.seed, config.task.eval_sequences
        # Distinct seed streams: training batches (0, ...), valid (1), test (2), probe (3).
        self.sets = {"valid": self.task.sample(n, seeded_generator(seed, 1)),
                     "test": self.task.sample(n, seeded_generator(seed, 2))}

    @staticmethod
    def new_model(config: Config, vocab: Vocabulary | None) -> SequenceModel:
        task = make_task(config.task.name, config.task.length)
        return SequenceModel.from_config(config.model, task, config.regularization)

    @classmethod
    def evaluate_checkpoint(cls, model: RecurrentModel, config: Config, vocab: Vocabulary | None, split: str, *,
                            batch_size: int | None = None, on_window: EvalProgress | None = None,
                            mc_samples: int = 0) -> tuple[Metrics, str]:
        check_corpus_options(config, batch_size=batch_size, mc_samples=mc_samples)
        workload = cls(config, next(model.parameters()).device, model=model)
        metrics = workload.evaluate(split, on_window)
        return {"task": config.task.name, **metrics}, f"{split} {workload.summary(metrics)}"

    def window(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = seeded_generator(self.config.train.seed, 0, epoch, index)
        inputs, targets = self.task.sample(self.config.train.batch_size, generator)
        return inputs.to(self.device), targets.to(self.device)

    @torch.no_grad()
    def evaluate(self, split: str, on_window: EvalProgress | None = None,
                 model: RecurrentModel | None = None) -> Metrics:
        model = model if model is not None else self.model
        inputs, targets = self.sets[split]
        chunks = []
        total = -(-inputs.size(1) // self.EVAL_CHUNK)
        with evaluating(model):
            for index, begin in enumerate(range(0, inputs.size(1), self.EVAL_CHUNK)):
                chunk = inputs[:, begin : begin + self.EVAL_CHUNK].to(self.device)
                chunks.append(model.predict(chunk).float().cpu())  # (T, b, O)
                if on_window is not None:
                    on_window(index + 1, total)
        return {**self.task.evaluate(torch.cat(chunks, dim=1), targets), "sequences": inputs.size(1)}

    def summary(self, metrics: Metrics) -> str:
        metric = self.task.metric
        return f"{metric} {metrics[metric]:.4f} (not learned: {metrics['baseline_' + metric]:.4f})"

    def probe_batch(self, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        task = make_task(self.task.name, length or self.task.length)
        inputs, targets = task.sample(batch, seeded_generator(self.config.train.seed, 3))
        return inputs.to(self.device), targets.to(self.device)


def per_word_and_char(loss: float, tokens: int, sizes: dict[str, int]) -> Metrics:
    """The same log-likelihood per word and per character of the text (text_sizes), so word, char and subword
    models compare: perplexity per word, per character, and bits per character."""
    total = loss * tokens  # nats over the split
    return {"words": sizes["words"], "word_ppl": math.exp(min(total / sizes["words"], 700.0)),
            "chars": sizes["chars"], "char_ppl": math.exp(min(total / sizes["chars"], 700.0)),
            "bpc": total / sizes["chars"] / math.log(2)}


def other_units(metrics: Metrics, level: str) -> str:
    """What a per-token perplexity line adds for the units the level does not count in."""
    if "word_ppl" not in metrics:
        return ""
    if level == "word":
        return f"; {metrics['bpc']:.3f} bits per character"
    return f"; per word {metrics['word_ppl']:.2f}, {metrics['bpc']:.3f} bits per character"


def workload_class(config: Config) -> type[Workload]:
    """The kind of problem ``config`` describes: the one place that asks ``config.is_task``."""
    return SyntheticTask if config.is_task else LanguageModelling


def build_workload(config: Config, device: torch.device, corpus: Corpus | None = None,
                   ranks: Ranks | None = None) -> Workload:
    ranks = ranks or Ranks()
    if ranks.active and not workload_class(config).reads_corpus:
        raise ConfigError(f"distributed training splits a corpus's columns; the {config.task.name} task trains in "
                          "one process")
    try:
        if ranks.active:
            return LanguageModelling(config, device, corpus, ranks)
        return workload_class(config)(config, device, corpus)
    except (MemoryError, torch.OutOfMemoryError) as exc:
        raise _no_memory(config, device, exc) from None
    except RuntimeError as exc:  # the CPU allocator's "can't allocate memory" is a plain RuntimeError
        if "allocate" not in str(exc):
            raise
        raise _no_memory(config, device, exc) from None


def _no_memory(config: Config, device: torch.device, exc: BaseException) -> RnnlabError:
    model = config.model
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return RnnlabError(f"not enough memory on {device} to build the model ({model.num_layers} x {model.hidden_size} "
                       f"{model.cell}, embedding {model.embedding_dim}): {reason}")


def check_corpus_options(config: Config, **given: Any) -> None:
    """Refuse options that only a language model has (``data=``, ``batch_size=``, ``mc_samples=``: the
    command-line options --data, --batch-size, --mc-samples) for a problem that reads no corpus."""
    if workload_class(config).reads_corpus:
        return
    for name, value in given.items():
        if value:
            option = "--" + name.replace("_", "-")
            raise ConfigError(f"{option} applies to language models, not to the {config.task.name} task")
