"""The two inner loops: one training step on a window, and exact evaluation of a split."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from rnnlab.data.batching import EvalStream
from rnnlab.models.base import RecurrentModel
from rnnlab.nn.mode import evaluating, in_mode
from rnnlab.nn.output import IGNORE_INDEX
from rnnlab.nn.recurrent import State, detach_state, map_state, map_states
from rnnlab.training.optim import skips_on_device


class StepResult(NamedTuple):
    loss: torch.Tensor  # summed NLL over the window (detached, on the model's device)
    tokens: torch.Tensor  # tokens scored
    grad_norm: torch.Tensor  # global gradient norm before clipping
    state: State  # the state the next window starts from, detached (the incoming one when the step was skipped)
    applied: torch.Tensor  # bool scalar on the device: the update was applied (the loss and gradient were finite)
    grad_finite: torch.Tensor  # (P,) bool on the device: which gradients were finite, in ``grad_names`` order
    grad_names: tuple[str, ...]  # every parameter's name (one without gradient counts as finite)

    def faults(self) -> list[str]:
        """The parameters whose gradient was not finite (reads the device: call it off the hot path)."""
        bad = [name for name, ok in zip(self.grad_names, self.grad_finite.tolist()) if not ok]
        return bad or ["(the loss)"]


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    state: State | None,
    *,
    clip_norm: float,
    loss_average: str,
    skip_nonfinite: bool = True,
    autocast: torch.dtype | None = None,
) -> StepResult:
    """Forward, backward, clip, update, without a host synchronisation.

    With ``skip_nonfinite`` a step whose loss or gradient norm is not finite changes nothing: no update, the
    optimizer state untouched, and the window's incoming state carried on instead of its (non-finite) final
    one. The decision stays on the device: the fused optimizers take it as ``found_inf``, the same hook
    torch.amp.GradScaler uses, so nothing waits for the GPU; ``applied`` says afterwards what happened. An
    optimizer without that hook (not built by ``make_optimizer``) makes the step read the flag instead.

    ``autocast`` (train.precision = bf16: torch.bfloat16) runs the forward under torch.autocast; the weights,
    gradients and optimizer stay float32 and the output layers sum their losses in float32.

    ``model`` is a ``RecurrentModel`` or a wrapper of one (DistributedDataParallel): the loss comes
    from calling it, so the wrapper sees the whole graph."""
    optimizer.zero_grad(set_to_none=True)
    distributed = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    with _autocast(inputs.device, autocast):
        out = model(inputs, targets, state)
    # "sequences": summed over time, averaged over the batch (Zaremba 2014); "tokens": per token.
    divisor = out.tokens if loss_average == "tokens" else inputs.size(1)  # inputs are (T, B, ...)
    (out.loss / divisor + out.penalty).backward()
    named = list(model.named_parameters())
    params = [p for _, p in named if p.grad is not None]
    # get_total_norm's own arithmetic, keeping the per-parameter norms that name a fault.
    norms = torch.stack(torch._foreach_norm([p.grad for p in params]))
    grad_norm = torch.linalg.vector_norm(norms)
    grad_finite = norms.isfinite()
    if len(params) < len(named):  # a parameter without gradient (an unused adaptive-softmax cluster) is finite
        each, no_grad = iter(grad_finite), grad_finite.new_ones(())
        grad_finite = torch.stack([next(each) if p.grad is not None else no_grad for _, p in named])
    # Under DistributedDataParallel the gradient norm is the all-reduced one, the loss this rank's own: the norm
    # alone decides there, so every rank skips the same steps (a non-finite loss gives non-finite gradients).
    finite = torch.isfinite(grad_norm) if distributed else torch.isfinite(grad_norm) & torch.isfinite(out.loss)
    if not skip_nonfinite:
        finite = torch.ones((), dtype=torch.bool, device=grad_norm.device)
    names = tuple(name for name, _ in named)
    result = StepResult(out.loss.detach(), out.tokens, grad_norm, detach_state(state), finite, grad_finite, names)
    device_skip = skips_on_device(optimizer)
    if skip_nonfinite and not device_skip and not bool(finite):  # the fallback: one read of the device
        optimizer.zero_grad(set_to_none=True)
        return result
    if clip_norm > 0:  # the same as clip_grad_norm_, split so the check above sees the gradients unclipped
        torch.nn.utils.clip_grads_with_norm_(params, clip_norm, grad_norm)
    if skip_nonfinite and device_skip:
        optimizer.grad_scale, optimizer.found_inf = None, (~finite).float()
        try:
            optimizer.step()
        finally:
            optimizer.found_inf = None
    else:
        optimizer.step()
    new_state = detach_state(out.state)
    if autocast is not None:  # carried in float32: a bfloat16 LSTM c would be rounded at every window
        new_state = map_state(torch.Tensor.float, new_state)
    if skip_nonfinite and device_skip:
        if state is None:
            state = map_state(torch.zeros_like, new_state)
        new_state = map_states(lambda new, old: torch.where(finite, new, old), new_state, detach_state(state))
    return result._replace(state=new_state)


class SkippedSteps:
    """Counts skipped (non-finite) steps on the device, so the training loop never waits for it; ``read``
    fetches the counts (the trainer calls it where it syncs anyway: train records, validations, saves).
    ``update`` works in place, so a captured CUDA graph can replay it with the step."""

    class Summary(NamedTuple):
        skipped: int  # steps skipped since the last read
        run: int  # skipped steps in a row up to now
        run_first: int  # the first step of that run (-1: none)
        run_faults: list[str]  # the parameters at fault at that step
        longest: int  # the longest run that grew since the last read (0: none)
        longest_first: int  # its first step
        faults: list[str]  # the parameters at fault at that run's first step

    def __init__(self, device: torch.device, names: tuple[str, ...], step: int = 0, run: int = 0,
                 run_first: int = -1, run_faults: Sequence[str] = ()) -> None:
        self.names = names
        # skipped since the last read, run, run_first, longest, longest_first, and the step count
        self.counts = torch.tensor([0, run, run_first, 0, -1, step], dtype=torch.long, device=device)
        self.run_faults = torch.tensor([name in run_faults for name in names], dtype=torch.bool, device=device)
        self.longest_faults = self.run_faults.clone()

    def update(self, result: StepResult) -> None:
        """Count the step ``result`` came from (the step number advances on the device too)."""
        skipped, run, run_first, longest, longest_first, step = self.counts.unbind()
        bad = ~result.applied
        step = step + 1
        run = torch.where(bad, run + 1, 0)
        starts = bad & (run == 1)
        run_first = torch.where(bad, torch.where(starts, step, run_first), -1)
        self.run_faults.copy_(torch.where(starts, ~result.grad_finite, self.run_faults))
        longer = run > longest
        self.longest_faults.copy_(torch.where(longer, self.run_faults, self.longest_faults))
        self.counts.copy_(torch.stack([skipped + bad.long(), run, run_first, torch.where(longer, run, longest),
                                       torch.where(longer, run_first, longest_first), step]))

    def read(self) -> Summary:
        skipped, run, run_first, longest, longest_first, _ = self.counts.tolist()
        names = lambda flags: [name for name, bad in zip(self.names, flags.tolist()) if bad]  # noqa: E731
        summary = self.Summary(skipped, run, run_first, names(self.run_faults) if run else [], longest,
                               longest_first, names(self.longest_faults) or ["(the loss)"])
        # A run still going is counted again as it grows; one that has ended is not reported twice.
        self.counts[0], self.counts[3], self.counts[4] = 0, 0, -1
        return summary


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    # A CUDA graph replays the casts it captured: autocast's weight cache must be off while capturing.
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=not capturing)


def clip_gradients(params, max_norm: float) -> torch.Tensor:
    """Clip by global norm (Pascanu et al. 2013) when ``max_norm > 0``; return the pre-clip norm."""
    params = [p for p in params if p.grad is not None]
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params])


class EvalResult(NamedTuple):
    loss: float  # mean negative log-likelihood per token (nats)
    ppl: float
    tokens: int


@torch.no_grad()
def evaluate(
    model: RecurrentModel,
    stream: EvalStream,
    bptt: int,
    on_window: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Exact perplexity over every token of the stream, the state carried across windows."""
    device = next(model.parameters()).device
    inputs, targets = stream.inputs.to(device), stream.targets.to(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    state: State | None = None
    rows = inputs.size(0)
    windows = -(-rows // bptt)
    with evaluating(model):
        for index, begin in enumerate(range(0, rows, bptt)):
            out = model.exact_loss(inputs[begin : begin + bptt], targets[begin : begin + bptt], state)
            total += out.loss.double()
            state = out.state
            if on_window is not None:
                on_window(index + 1, windows)
    loss = total.item() / stream.tokens
    return EvalResult(loss, _perplexity(loss), stream.tokens)


@torch.no_grad()
def evaluate_mc_dropout(
    model: RecurrentModel,
    stream: EvalStream,
    bptt: int,
    samples: int,
    on_window: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Monte-Carlo dropout evaluation (Gal & Ghahramani 2016): the predictive distribution is the mean of
    ``samples`` distributions, each with its own dropout masks (and its own carried state), and the
    perplexity is that mixture's, exact over every token: log p(w) = logsumexp_s log p_s(w) - log S."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    device = next(model.parameters()).device
    inputs, targets = stream.inputs.to(device), stream.targets.to(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    states: list[State | None] = [None] * samples
    rows = inputs.size(0)
    windows = -(-rows // bptt)
    with in_mode(model, True):  # dropout on: every sample draws its own masks
        for index, begin in enumerate(range(0, rows, bptt)):
            window_targets = targets[begin : begin + bptt].reshape(-1)  # (T*B,)
            scored = window_targets != IGNORE_INDEX
            picked = []
            for s in range(samples):
                features, states[s] = model.features(inputs[begin : begin + bptt], states[s])
                log_probs = model.output.log_probs(features.reshape(-1, features.size(-1)))  # (T*B, V)
                picked.append(log_probs[scored].gather(1, window_targets[scored].unsqueeze(1)).squeeze(1))
            mixture = torch.logsumexp(torch.stack(picked).double(), dim=0) - math.log(samples)  # (N,)
            total -= mixture.sum()
            if on_window is not None:
                on_window(index + 1, windows)
    loss = total.item() / stream.tokens
    return EvalResult(loss, _perplexity(loss), stream.tokens)


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf
