"""train.cuda_graphs: the whole training step (forward, backward, clip, update) captured once in a CUDA graph
and replayed for every window of the captured shape, one launch instead of hundreds (an H200 ran the
ptb-medium LSTM step 1.64x faster captured; ../shared/ANCHORS.md).

A graph replays fixed addresses: the step reads its window, incoming state and learning rate from static
buffers that each call fills, and returns outputs that the next replay overwrites (the trainer consumes them
before its next step). Windows of another shape (an epoch's short last one) take the eager step, which
computes the same thing. The first ``warmup`` steps are eager too, on a side stream: they create the
optimizer state and the cuDNN and cuBLAS workspaces outside the capture, as torch.cuda.graphs asks.

``Rerun`` stands in for the CUDA graph on the CPU: a "replay" runs the captured function again on the same
static buffers, so the buffer plumbing is tested everywhere; what only CUDA can check (the capture itself,
speed) is bench/gpu.sh's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from rnnlab.nn.recurrent import State, map_state, map_states
from rnnlab.training.loop import StepResult, train_step

CAPTURABLE_OUTPUTS = ("softmax",)  # sampled / NCE draw candidates on the host (frozen in a graph); adaptive syncs


class CudaGraphs:
    """Captures with torch.cuda.CUDAGraph; warm-up steps run on a side stream."""

    def __init__(self) -> None:
        self.stream = torch.cuda.Stream()

    @contextlib.contextmanager
    def side_stream(self) -> Iterator[None]:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            yield
        torch.cuda.current_stream().wait_stream(self.stream)

    def capture(self, step: Callable[[], StepResult]) -> Callable[[], StepResult]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = step()

        def replay() -> StepResult:
            graph.replay()
            return outputs

        return replay


class Rerun:
    """The CPU stand-in: no capture, every replay runs the step function again on the static buffers."""

    side_stream = staticmethod(contextlib.nullcontext)

    def capture(self, step: Callable[[], StepResult]) -> Callable[[], StepResult]:
        return step


class CapturedStep:
    """``train_step`` with the same arguments, replayed from a graph where the window's shape allows."""

    WARMUP = 3  # eager steps before the capture

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, clip_norm: float,
                 loss_average: str, autocast: torch.dtype | None = None, graphs: CudaGraphs | Rerun | None = None,
                 warmup: int = WARMUP, after: Callable[[StepResult], None] | None = None) -> None:
        if warmup < 1:
            raise ValueError("CapturedStep needs at least one eager step before the capture (the state's shape)")
        if len({float(group["lr"]) for group in optimizer.param_groups}) != 1:
            raise ValueError("train.cuda_graphs needs one learning rate for every parameter group")
        self.model, self.optimizer = model, optimizer
        self.options = dict(clip_norm=clip_norm, loss_average=loss_average, autocast=autocast)
        self.graphs = graphs if graphs is not None else CudaGraphs()
        self.warmup = warmup
        self.after = after or (lambda result: None)  # in-place device work on each result, captured with the step
        self._longest = 0  # the longest window seen: the one to capture
        self.eager_steps = 0  # steps taken without the graph (warm-up, other shapes)
        self.replays = 0
        self._replay: Callable[[], StepResult] | None = None
        self._inputs = self._targets = self._lr = None
        self._state: State | None = None
        self._last_state: State | None = None  # an eager step's final state: the shape of the static one

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None) -> StepResult:
        if self._replay is None and (self.eager_steps < self.warmup or inputs.size(0) < self._longest):
            with self.graphs.side_stream():  # not a short window either: the full length is the one to capture
                return self._eager(inputs, targets, state)
        if self._replay is None:
            self._capture(inputs, targets, state)
        if inputs.shape != self._inputs.shape or targets.shape != self._targets.shape:
            return self._eager(inputs, targets, state)  # an epoch's short last window
        self._inputs.copy_(inputs)
        self._targets.copy_(targets)
        if state is None:  # an epoch starts from the zero state, as the model does for None
            map_state(torch.Tensor.zero_, self._state)
        elif state is not self._state:
            map_states(torch.Tensor.copy_, self._state, state)
        self._lr.fill_(self.optimizer.param_groups[0]["lr"])  # a kernel with the value: no sync
        self.replays += 1
        return self._replay()

    def _eager(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None) -> StepResult:
        self.eager_steps += 1
        self._longest = max(self._longest, inputs.size(0))
        result = train_step(self.model, self.optimizer, inputs, targets, state, **self.options)
        self.after(result)
        self._last_state = result.state
        return result

    def _capture(self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None) -> None:
        self._inputs, self._targets = inputs.clone(), targets.clone()
        self._state = map_state(torch.clone, state) if state is not None else map_state(torch.zeros_like,
                                                                                         self._last_state)
        self._lr = torch.tensor(float(self.optimizer.param_groups[0]["lr"]), device=inputs.device)

        def step() -> StepResult:
            with self._reading_lr_from_tensor():
                result = train_step(self.model, self.optimizer, self._inputs, self._targets, self._state,
                                     **self.options)
            self.after(result)
            return result

        self._replay = self.graphs.capture(step)

    @contextlib.contextmanager
    def _reading_lr_from_tensor(self) -> Iterator[None]:
        """While the step is captured, the update reads its lr from ``self._lr`` (the fused kernels take a
        tensor lr): the param groups keep their floats outside, so schedules and checkpoints see no change."""
        groups = self.optimizer.param_groups
        saved = [(group["lr"], group.get("capturable")) for group in groups]
        for group in groups:
            group["lr"] = self._lr
            if "capturable" in group:
                group["capturable"] = True  # Adam's capture check; its fused step keeps the count on the device
        try:
            yield
        finally:
            for group, (lr, capturable) in zip(groups, saved):
                group["lr"] = lr
                if capturable is not None:
                    group["capturable"] = capturable
