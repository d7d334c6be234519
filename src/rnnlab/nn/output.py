"""Output layers: hidden states -> a distribution over the vocabulary.

Every output layer implements the same interface, so the model and trainer never know which one
they hold:

- ``forward(hidden (N, H), targets (N,)) -> OutputLoss``: the training loss, summed over tokens.
  A sampled or NCE layer may return an approximation here, and a penalty term the model passes on.
- ``exact_loss(hidden, targets) -> OutputLoss``: the exact, normalised negative log-likelihood,
  used by evaluation whatever the training loss was.
- ``log_probs(hidden (N, H)) -> (N, V)``: exact log-probabilities, for generation.
- ``objective``: the name the training loss is logged under. Only an exact loss is a perplexity: a
  sampled or NCE loss is logged as ``sampled_loss`` / ``nce_loss``, never as ``loss`` or ``ppl``.

Targets equal to ``IGNORE_INDEX`` are not scored (evaluation pads its last window with them).

The layers: ``softmax`` (FullSoftmax), ``sampled`` (SampledSoftmax, Jean et al. 2015), ``nce``
(NCELoss, Mnih & Teh 2012), ``adaptive`` (torch's AdaptiveLogSoftmaxWithLoss, Grave et al. 2017),
and ``auto``: ``softmax`` below the vocabulary size where sampling starts to pay on the device,
``sampled`` from there on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.config import OUTPUT_KINDS
from rnnlab.errors import ConfigError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # F.cross_entropy's default: a target that is not scored (evaluation's padding)

# model.output = auto: the vocabulary size from which a sampled softmax (output.num_samples = 1024) makes the
# output layer at least twice as fast as the full one, per device type. CPU: `python bench/output_speed.py
# --crossover` (docs/RESULTS.md: 2.1x at V = 3,000 with d = 200, 2.6x with d = 650; barely faster just above
# S). CUDA: not measured by rnnlab yet; ANCHORS.md's H200 figures have the full softmax faster at 10k and
# sampled 6.2x faster at 100k, so 100k is the smallest size known to pay there.
SAMPLED_PAYS_FROM = {"cpu": 3_000, "cuda": 100_000}
UNIQUE_DRAW_LIMIT = 1000  # unique sampling gives up (and takes every id once) after this many draws per candidate


class OutputLoss(NamedTuple):
    loss: torch.Tensor  # scalar: negative log-likelihood summed over the scored tokens
    tokens: torch.Tensor  # scalar int64: how many tokens were scored
    penalty: torch.Tensor | None = None  # a training-only term added after averaging (None: none)


class OutputLayer(nn.Module):
    objective = "loss"  # the training loss is the exact negative log-likelihood

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        raise NotImplementedError

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def exact_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        loss = F.nll_loss(self.log_probs(hidden), targets, reduction="sum", ignore_index=IGNORE_INDEX)
        return OutputLoss(loss, (targets != IGNORE_INDEX).sum())


class FullSoftmax(OutputLayer):
    """A linear map to V logits and a softmax over all of them. ``weight`` is (V, H), like
    ``nn.Linear``'s, so an embedding of the same shape can share it (weight tying)."""

    def __init__(self, hidden_size: int, vocab_size: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(vocab_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default init, so init = "default" means what PyTorch users expect.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight.size(1))
            nn.init.uniform_(self.bias, -bound, bound)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias)

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        logits = self.logits(hidden)
        logits = logits.to(_accumulation_dtype(logits))  # bf16 logits (autocast) normalised and summed in float32
        loss = F.cross_entropy(logits, targets, reduction="sum", ignore_index=IGNORE_INDEX)
        return OutputLoss(loss, (targets != IGNORE_INDEX).sum())

    exact_loss = forward

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.logits(hidden)
        return F.log_softmax(logits.to(_accumulation_dtype(logits)), dim=-1)





# ---------------------------------------------------------------- sampled softmax and NCE
#
# Both score each token's true class and S candidates shared by the whole batch (one (S, H) gather, one
# (N, H) x (H, S) product), with TensorFlow's sampled_softmax_loss / nce_loss semantics. Their exact loss
# and log_probs are FullSoftmax's on the same weights: a sampled model evaluates, generates and is
# diagnosed like any other, and its state_dict is a full softmax's.


class Draw(NamedTuple):
    ids: torch.Tensor  # (S,) candidate ids, int64, on the CPU
    tries: float  # draws with replacement it took (inf: every id taken once)
    replacement: bool


class CandidateSampler:
    """A proposal Q over the frequency-sorted ids: draws a step's candidates and says how often each id is
    expected in that draw (the logits' correction).

    ``log_uniform``: Zipfian over ranks, Q(k) = (log(k+2) - log(k+1)) / log(V+1), drawn by inverting its
    CDF. ``unigram``: training counts to the power ``power``, normalised. Draws use the global CPU
    generator, which checkpoints save, so a resumed run draws the same candidates.
    """

    def __init__(self, kind: str, vocab_size: int, counts: Sequence[int] | None = None, power: float = 0.75) -> None:
        self.kind, self.vocab_size = kind, vocab_size
        if kind == "log_uniform":
            ranks = torch.arange(vocab_size, dtype=torch.float64)
            probs = (torch.log(ranks + 2) - torch.log(ranks + 1)) / math.log(vocab_size + 1)
        elif kind == "unigram":
            if counts is None or len(counts) != vocab_size:
                raise ValueError(f"the unigram sampler needs the {vocab_size} training counts of the vocabulary")
            probs = torch.as_tensor(list(counts), dtype=torch.float64).clamp(min=0) ** power
            if not probs.sum() > 0:
                raise ValueError("the unigram sampler needs a token with a training count above 0")
            probs = probs / probs.sum()
        else:
            raise ValueError(f"unknown sampler {kind!r} (samplers: log_uniform, unigram)")
        self.probs = probs  # derived from the vocabulary: not a parameter, not in the state_dict; on the CPU
        self._device_probs: torch.Tensor | None = None  # a copy where the targets are, made once

    def draw(self, num: int, replacement: bool) -> Draw:
        """``num`` candidates; without replacement, the first ``num`` distinct ids of draws with replacement
        (TensorFlow's unique sampling), whose count sets the expected counts."""
        if replacement:
            return Draw(self._draw(num), float(num), True)
        support = int((self.probs > 0).sum())  # ids the proposal can draw at all (a count of 0 never is)
        if num >= support:
            return Draw(torch.arange(self.vocab_size), math.inf, False)  # every id once: no correction
        drawn = torch.empty(0, dtype=torch.long)
        while True:
            drawn = torch.cat([drawn, self._draw(max(2 * num, drawn.numel()))])  # doubling: few unique() passes
            ids, inverse = torch.unique(drawn, return_inverse=True)
            if ids.numel() >= num:
                break
            if drawn.numel() > UNIQUE_DRAW_LIMIT * num:  # the last ids are too rare to collect: take every id
                return Draw(torch.arange(self.vocab_size), math.inf, False)
        # Order the distinct ids by first appearance; where the num-th appeared is the number of tries.
        positions = torch.arange(drawn.numel())
        first = torch.full((ids.numel(),), drawn.numel()).scatter_reduce(0, inverse, positions, "amin")
        order = first.argsort()[:num]
        return Draw(ids[order], float(first[order[-1]]) + 1, False)

    def log_expected_count(self, ids: torch.Tensor, draw: Draw) -> torch.Tensor:
        """log E[times each of ``ids`` is in ``draw``]: log(tries * Q) with replacement, log(1 - (1 - Q)^tries)
        without (0 when every id was taken once)."""
        if math.isinf(draw.tries):
            return torch.zeros(ids.shape, device=ids.device)
        probs = self._probs_on(ids.device)[ids]  # the targets stay on their device: no copy to the host
        counts = draw.tries * probs if draw.replacement else -torch.expm1(draw.tries * torch.log1p(-probs))
        return counts.log().float()

    def _probs_on(self, device: torch.device) -> torch.Tensor:
        if self._device_probs is None or self._device_probs.device != device:
            self._device_probs = self.probs.to(device)
        return self._device_probs

    def _draw(self, num: int) -> torch.Tensor:
        if self.kind == "log_uniform":
            uniform = torch.rand(num, dtype=torch.float64)
            ids = torch.floor(torch.exp(uniform * math.log(self.vocab_size + 1))).long() - 1
            return ids.clamp_(0, self.vocab_size - 1)
        return torch.multinomial(self.probs, num, replacement=True)


def _accumulation_dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.promote_types(tensor.dtype, torch.float32)


def _scored(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets with ignored ones replaced by id 0, float mask of the scored ones): gathers need valid ids."""
    keep = targets != IGNORE_INDEX
    return torch.where(keep, targets, torch.zeros_like(targets)), keep


def _candidate_logits(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw scores h.w_k + b_k of each token's target (N,) and of the shared candidates (N, S)."""
    ids = torch.cat([targets, candidates])
    rows = weight[ids]  # (N + S, H): one gather
    true = (hidden * rows[: targets.numel()]).sum(-1)
    sampled = hidden @ rows[targets.numel():].t()
    if bias is not None:
        picked = bias[ids]
        true, sampled = true + picked[: targets.numel()], sampled + picked[targets.numel():]
    return true, sampled


def sampled_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None, candidates: torch.Tensor, log_count_candidates: torch.Tensor,
                         log_count_targets: torch.Tensor, remove_accidental_hits: bool = True) -> torch.Tensor:
    """Summed negative log-likelihood of each target among itself and the candidates (Jean et al. 2015):
    every logit minus the log of its expected count; a candidate equal to the target (an accidental hit)
    is removed, so the true class is scored exactly once."""
    targets, keep = _scored(targets)
    true, sampled = _candidate_logits(hidden, targets, weight, bias, candidates)
    sampled = sampled - log_count_candidates
    if remove_accidental_hits:
        sampled = sampled.masked_fill(candidates.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([(true - log_count_targets).unsqueeze(1), sampled], dim=1)  # the true class in column 0
    logits = logits.to(_accumulation_dtype(logits))  # bf16 / fp16 logits summed in float32
    nll = torch.logsumexp(logits, dim=1) - logits[:, 0]
    return (nll * keep).sum()


def nce_loss(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
             noise: torch.Tensor, log_count_noise: torch.Tensor, log_count_targets: torch.Tensor) -> torch.Tensor:
    """Noise-contrastive estimation (Mnih & Teh 2012), summed over tokens: a logistic classifier tells each
    target from the noise ids with the logit s(w) - log E[count of w in the noise], where s = h.w + b is
    taken as a log-probability with the normaliser fixed at 1 (self-normalised)."""
    targets, keep = _scored(targets)
    true, sampled = _candidate_logits(hidden, targets, weight, bias, noise)
    dtype = _accumulation_dtype(sampled)  # bf16 / fp16 scores summed in float32
    data_term = F.softplus(-(true - log_count_targets).to(dtype))  # -log sigmoid(true logit)
    noise_term = F.softplus((sampled - log_count_noise).to(dtype)).sum(1)  # -log(1 - sigmoid(noise logit))
    return ((data_term + noise_term) * keep).sum()


class SampledSoftmax(FullSoftmax):
    """Trains on a sampled softmax over ``num_samples`` candidates per step; evaluates exactly."""

    objective = "sampled_loss"

    def __init__(self, hidden_size: int, vocab_size: int, sampler: CandidateSampler, num_samples: int,
                 replacement: bool = False) -> None:
        super().__init__(hidden_size, vocab_size)
        self.sampler, self.num_samples, self.replacement = sampler, num_samples, replacement

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        if not self.training:
            return self.exact_loss(hidden, targets)
        draw = self.sampler.draw(self.num_samples, self.replacement)
        candidates = draw.ids.to(hidden.device, non_blocking=True)
        loss = self.candidate_loss(hidden, targets, self.weight, self.bias, candidates,
                                   self.sampler.log_expected_count(candidates, draw),
                                   self.sampler.log_expected_count(_scored(targets)[0], draw))
        return OutputLoss(loss, (targets != IGNORE_INDEX).sum())

    @staticmethod
    def candidate_loss(*args: torch.Tensor) -> torch.Tensor:
        """The training loss over the true classes and the drawn candidates (NCELoss puts its own here)."""
        return sampled_softmax_loss(*args)

    def exact_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        return FullSoftmax.forward(self, hidden, targets)


class NCELoss(SampledSoftmax):
    """Trains by noise-contrastive estimation against ``num_samples`` noise ids per step; evaluates exactly.
    The output bias starts at -log V, so that the scores start out normalised (Mnih & Teh 2012)."""

    objective = "nce_loss"

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            nn.init.constant_(self.bias, -math.log(self.weight.size(0)))

    @staticmethod
    def candidate_loss(*args: torch.Tensor) -> torch.Tensor:
        return nce_loss(*args)  # the candidates are the noise words


# ---------------------------------------------------------------- adaptive softmax


def frequency_cutoffs(counts: Sequence[int], coverage: Sequence[float] = (0.8, 0.95)) -> list[int]:
    """Adaptive softmax cutoffs for a frequency-sorted vocabulary: the head holds the most frequent ids that
    cover ``coverage[0]`` of the training tokens, each tail cluster the next share, the last cluster the
    rest (Grave et al. 2017 size the head for the bulk of the tokens)."""
    vocab_size = len(counts)
    total = float(sum(counts))
    cutoffs, running, rank = [], 0.0, 0
    for share in coverage:
        while rank < vocab_size - 1 and running < share * total:
            running += counts[rank]
            rank += 1
        if 0 < rank < vocab_size and (not cutoffs or rank > cutoffs[-1]):
            cutoffs.append(rank)
    return cutoffs or [max(1, vocab_size // 2)]


class AdaptiveSoftmax(OutputLayer):
    """torch.nn.AdaptiveLogSoftmaxWithLoss: a head over the frequent ids and the cluster tokens, smaller
    projections for the rarer clusters. Its loss is exact, so it trains, evaluates and generates with the
    same normalised distribution."""

    def __init__(self, hidden_size: int, vocab_size: int, cutoffs: Sequence[int], div_value: float = 4.0) -> None:
        super().__init__()
        self.cutoffs = list(cutoffs)
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, self.cutoffs, div_value=div_value)

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> OutputLoss:
        targets, keep = _scored(targets)
        target_log_probs = self.adaptive(hidden, targets).output  # (N,)
        return OutputLoss(-(target_log_probs.to(_accumulation_dtype(target_log_probs)) * keep).sum(), keep.sum())

    exact_loss = forward

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.adaptive.log_prob(hidden)


# ---------------------------------------------------------------- choosing one


def resolve_output_kind(kind: str, vocab_size: int, device_type: str) -> str:
    """``auto`` -> softmax or sampled for this vocabulary on this device type; any other kind as given."""
    if kind != "auto":
        return kind
    threshold = SAMPLED_PAYS_FROM.get(device_type, SAMPLED_PAYS_FROM["cuda"])
    chosen = "sampled" if vocab_size >= threshold else "softmax"
    log.info("model.output = auto: %s (vocabulary %d, sampling pays from %d on %s)", chosen, vocab_size,
             threshold, device_type)
    return chosen


def make_output_layer(kind: str, hidden_size: int, vocab_size: int, *, counts: Sequence[int] | None = None,
                      num_samples: int = 1024, sampler: str = "default", unigram_power: float = 0.75,
                      replacement: bool = False, cutoffs: Sequence[int] = (), div_value: float = 4.0,
                      device_type: str = "cpu") -> OutputLayer:
    """The output layer ``kind`` (one of OUTPUT_KINDS). ``counts``: the vocabulary's training counts, for the
    unigram sampler and adaptive's default cutoffs."""
    kind = resolve_output_kind(kind, vocab_size, device_type)
    if kind == "softmax":
        return FullSoftmax(hidden_size, vocab_size)
    if kind in ("sampled", "nce"):
        if sampler == "default":
            sampler = "log_uniform" if kind == "sampled" else "unigram"
        proposal = CandidateSampler(sampler, vocab_size, counts, unigram_power)
        layer = SampledSoftmax if kind == "sampled" else NCELoss
        return layer(hidden_size, vocab_size, proposal, num_samples, replacement)
    if kind == "adaptive":
        if not cutoffs:
            if counts is None:
                raise ConfigError("adaptive softmax needs output.cutoffs or the vocabulary's counts")
            cutoffs = frequency_cutoffs(counts)
        if list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] < 1 or cutoffs[-1] > vocab_size - 1:
            raise ConfigError(f"output.cutoffs must increase strictly within 1 .. {vocab_size - 1} (the vocabulary has "
                             f"{vocab_size} ids), got {list(cutoffs)}")
        narrowest = int(hidden_size // div_value ** len(cutoffs))  # torch's width for the last tail cluster
        if narrowest < 1:
            raise ConfigError(f"adaptive softmax: the last of {len(cutoffs)} tail clusters would get {hidden_size} // "
                              f"{div_value:g}^{len(cutoffs)} = 0 units; lower output.div_value or give fewer cutoffs")
        return AdaptiveSoftmax(hidden_size, vocab_size, cutoffs, div_value)
    raise ValueError(f"unknown output layer {kind!r} (layers: {', '.join(OUTPUT_KINDS)})")
