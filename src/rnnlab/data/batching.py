"""Truncated-BPTT batching.

Training: the token stream is cut into B contiguous columns, and the rows are read in windows of
``bptt`` steps. The recurrent state at the end of one window is the start of the next (detached),
so column b reads its piece of text from beginning to end::

    stream  a b c d e f g h i j k l m n o p q r s t u v w x   (N = 24, B = 4)

    batchify ->   a g m s      windows (bptt = 2), targets are the rows below the inputs:
                  b h n t        inputs [a g m s; b h n t]  targets [b h n t; c i o u]
                  c i o u        inputs [c i o u; d j p v]  targets [d j p v; e k q w]
                  d j p v        inputs [e k q w]           targets [f l r x]
                  e k q w
                  f l r x      (N mod B tokens at the end are dropped)

Evaluation must score every token of a split exactly once, so it uses ``eval_stream``: the inputs
are ``<eos>`` followed by the split, the targets are the split itself (every token is predicted,
the first one from a line start), cut into B columns and padded at the end with ``IGNORE_INDEX``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from rnnlab.errors import DataError
from rnnlab.nn.output import IGNORE_INDEX


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) -> (N // B, B): column b holds tokens [b * N//B, (b+1) * N//B)."""
    rows = ids.numel() // batch_size
    if rows < 2:
        raise DataError(f"{ids.numel()} tokens are too few for {batch_size} columns (each needs at least 2 tokens); "
                        "lower the batch size or use more data")
    return ids[: rows * batch_size].view(batch_size, rows).t().contiguous()


def num_windows(rows: int, bptt: int) -> int:
    """Windows per pass over a (rows, B) batchified stream: targets need one row of look-ahead."""
    return -(-(rows - 1) // bptt)


def window(data: torch.Tensor, bptt: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Window ``index`` of a (rows, B) batchified stream: inputs and targets, each (L, B), L <= bptt;
    the targets are the inputs one step ahead."""
    begin = index * bptt
    length = min(bptt, data.size(0) - 1 - begin)
    return data[begin : begin + length], data[begin + 1 : begin + 1 + length]


def bptt_windows(data: torch.Tensor, bptt: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield every window from index ``start`` on."""
    for index in range(start, num_windows(data.size(0), bptt)):
        yield window(data, bptt, index)


class EvalStream(NamedTuple):
    inputs: torch.Tensor  # (R, B) token ids
    targets: torch.Tensor  # (R, B) token ids, IGNORE_INDEX past the end of the split
    tokens: int  # real targets: exactly the split's length


def eval_stream(ids: torch.Tensor, batch_size: int, eos_id: int) -> EvalStream:
    """Inputs ``<eos> + ids[:-1]`` and targets ``ids``, each cut into B padded columns."""
    n = ids.numel()
    if n == 0:
        raise DataError("cannot evaluate an empty split (its file holds no tokens)")
    batch_size = min(batch_size, n)
    rows = -(-n // batch_size)
    inputs = torch.full((rows * batch_size,), eos_id, dtype=torch.long)
    targets = torch.full((rows * batch_size,), IGNORE_INDEX, dtype=torch.long)
    inputs[0] = eos_id
    inputs[1:n] = ids[:-1]
    targets[:n] = ids
    # (R * B,) -> (B, R) -> (R, B): column b continues where column b-1 ends.
    return EvalStream(inputs.view(batch_size, rows).t().contiguous(),
                      targets.view(batch_size, rows).t().contiguous(), n)
