"""Vocabulary with ids sorted by decreasing training frequency.

Frequency order is a contract, not a detail: the log-uniform proposal of sampled softmax and the
clusters of adaptive softmax both assume id 0 is the most frequent token. Ties are broken by the
token's code points, so the same training text always gives the same ids.

A subword vocabulary also holds the SentencePiece model that cut the text into its tokens
(``sentencepiece``): whatever carries the vocabulary (checkpoints, the corpus cache) carries the
segmentation with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from rnnlab.data.tokenizers import EOS, UNK

SPECIALS = (UNK, EOS)


class Vocabulary:
    def __init__(self, tokens: Sequence[str], counts: Sequence[int], sentencepiece: bytes | None = None) -> None:
        self.sentencepiece = sentencepiece
        if len(tokens) != len(counts):
            raise ValueError(f"{len(tokens)} tokens but {len(counts)} counts")
        self.itos: list[str] = list(tokens)
        self.counts: list[int] = [int(c) for c in counts]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")
        missing = [s for s in SPECIALS if s not in self.stoi]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {missing}")
        self.unk_id = self.stoi[UNK]
        self.eos_id = self.stoi[EOS]

    @classmethod
    def build(cls, tokens: Iterable[str], min_freq: int = 1, max_size: int = 0) -> Vocabulary:
        """From training tokens. Tokens cut by ``min_freq``/``max_size`` are counted as ``<unk>``;
        ``<unk>`` and ``<eos>`` are always kept (``max_size`` includes them)."""
        counter = Counter(tokens)
        for special in SPECIALS:
            counter.setdefault(special, 0)
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        limit = max_size if max_size > 0 else len(ranked)
        if limit < len(SPECIALS):
            raise ValueError(f"max_size must leave room for {len(SPECIALS)} special tokens, got {max_size}")
        kept: dict[str, int] = {s: counter[s] for s in SPECIALS}
        dropped = 0
        for token, count in ranked:
            if token in kept:
                continue
            if count >= min_freq and len(kept) < limit:
                kept[token] = count
            else:
                dropped += count
        kept[UNK] += dropped
        ordered = sorted(kept.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([t for t, _ in ordered], [c for _, c in ordered])

    @classmethod
    def build_subword(cls, tokens: Iterable[str], pieces: Iterable[str], sentencepiece: bytes) -> Vocabulary:
        """From subword training tokens: every piece of the model gets an id (a piece unseen in training counts
        0), so held-out text, which byte fallback always segments into pieces, has no unknown token."""
        counter = Counter(tokens)
        for token in (*SPECIALS, *pieces):
            counter.setdefault(token, 0)
        ordered = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([t for t, _ in ordered], [c for _, c in ordered], sentencepiece)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> tuple[torch.Tensor, int]:
        """Token strings -> (int64 ids, number of out-of-vocabulary tokens mapped to ``<unk>``)."""
        get, unk = self.stoi.get, self.unk_id
        ids = [get(t, -1) for t in tokens]
        oov = ids.count(-1)
        if oov:
            ids = [unk if i < 0 else i for i in ids]
        return torch.tensor(ids, dtype=torch.long), oov

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"tokens": list(self.itos), "counts": list(self.counts)}
        if self.sentencepiece is not None:
            data["sentencepiece"] = self.sentencepiece  # bytes: plain data for a weights-only load
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        return cls(data["tokens"], data["counts"], data.get("sentencepiece"))
