"""The two inner loops: one training step on a window, and exact evaluation of a split."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from rnnlab.data.batching import EvalStream
from rnnlab.models.base import RecurrentModel
from rnnlab.nn.mode import evaluating, in_mode
from rnnlab.nn.output import IGNORE_INDEX
from rnnlab.nn.recurrent import State, detach_state


class StepResult(NamedTuple):
    loss: torch.Tensor  # summed NLL over the window (detached, on the model's device)
    tokens: torch.Tensor  # tokens scored
    grad_norm: torch.Tensor  # global gradient norm before clipping
    state: State  # final recurrent state, detached: the next window starts from it
    nonfinite: list[str] | None = None  # a skipped update: the parameters whose gradients were not finite


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
) -> StepResult:
    """Forward, backward, clip, update.

    With ``skip_nonfinite`` a step whose loss or gradient norm is not finite changes nothing: no update, the
    optimizer state untouched, and the window's incoming state carried on instead of its (non-finite) final
    one; ``nonfinite`` names the parameters at fault. That check reads one flag from the device per step (as
    torch.amp.GradScaler does; free on the CPU); without it the step has no host synchronisation.

    ``model`` is a ``RecurrentModel`` or a wrapper of one (DistributedDataParallel): the loss comes
    from calling it, so the wrapper sees the whole graph."""
    optimizer.zero_grad(set_to_none=True)
    distributed = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    out = model(inputs, targets, state)
    # "sequences": summed over time, averaged over the batch (Zaremba 2014); "tokens": per token.
    divisor = out.tokens if loss_average == "tokens" else inputs.size(1)  # inputs are (T, B, ...)
    (out.loss / divisor + out.penalty).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    # Under DistributedDataParallel the gradient norm is the all-reduced one, the loss this rank's own: the norm
    # alone decides there, so every rank skips the same steps (a non-finite loss gives non-finite gradients).
    finite = torch.isfinite(grad_norm) if distributed else torch.isfinite(grad_norm) & torch.isfinite(out.loss)
    if skip_nonfinite and not bool(finite):
        bad = [name for name, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
        optimizer.zero_grad(set_to_none=True)
        return StepResult(out.loss.detach(), out.tokens, grad_norm, detach_state(state), bad or ["(the loss)"])
    if clip_norm > 0:  # the same as clip_grad_norm_, split so the check above sees the gradients unclipped
        torch.nn.utils.clip_grads_with_norm_(params, clip_norm, grad_norm)
    optimizer.step()
    return StepResult(out.loss.detach(), out.tokens, grad_norm, detach_state(out.state))


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
