"""Data parallelism on torch.distributed: ``torchrun --nproc_per_node=N -m rnnlab train ...``.

torchrun starts N copies of the command with RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in the
environment; ``Ranks.from_environment`` joins them into one process group (NCCL on CUDA, gloo on the CPU)
with a timeout, so a rank that dies makes the others fail with one line instead of hanging. Each rank trains
its own batch columns of the same token streams; DistributedDataParallel all-reduces the gradients during the
backward pass, so clipping reads the global norm. Evaluation splits the streams' columns among the ranks and
sums the log-likelihood: exact and token-weighted. Only rank 0 writes the run directory.

Without WORLD_SIZE (or with 1) nothing here does anything: one process is the degenerate case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from rnnlab.errors import ConfigError, RnnlabError


class RankFailure(RnnlabError):
    """Another training process stopped (or cannot be reached): this one stops too, with one line."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device, timeout_s: float) -> Ranks:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        try:
            rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        except (KeyError, ValueError):
            raise ConfigError("WORLD_SIZE is set but RANK is not: start distributed training with torchrun") from None
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            try:
                dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
            except (RuntimeError, ValueError) as exc:
                raise RankFailure(f"rank {rank} could not join the process group: {_first_line(exc)}") from None
        return cls(rank, world, local_rank)

    # ------------------------------------------------------------------ collectives (no-ops for one process)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the ranks, in float64."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        self._call(dist.all_reduce, tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def any(self, *flags: bool) -> list[bool]:
        """Each flag, true when it is true on any rank (stop requests, time limits: every rank acts alike)."""
        if not self.active:
            return list(flags)
        tensor = torch.tensor([int(f) for f in flags], dtype=torch.int64, device=_collective_device())
        self._call(dist.all_reduce, tensor, op=dist.ReduceOp.MAX)
        return [bool(v) for v in tensor.tolist()]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (None elsewhere)."""
        if not self.active:
            return [obj]
        out: list[Any] | None = [None] * self.world if self.is_main else None
        self._call(dist.gather_object, obj, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.active:
            self._call(dist.barrier)

    def _call(self, collective: Any, *args: Any, **kwargs: Any) -> None:
        try:
            collective(*args, **kwargs)
        except (RuntimeError, dist.DistError) as exc:
            raise RankFailure(f"rank {self.rank} lost the other training processes (one stopped or cannot be "
                              f"reached): {_first_line(exc)}") from None


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
