"""Tokenization levels. Each level turns text into a list of token strings and back.

A line end is the token ``<eos>`` at every level, so ``"\\n"`` and ``<eos>`` are interchangeable:
``detokenize(tokenize(text)) == text`` for the char and subword levels, and for the word level up to
whitespace. The subword level learns its segmentation from the training split (``SubwordTokenizer.fit``);
the learned model travels inside the Vocabulary, so every checkpoint segments text the same way.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from typing import Protocol

EOS = "<eos>"
UNK = "<unk>"


class Tokenizer(Protocol):
    level: str

    def tokenize(self, text: str) -> list[str]: ...

    def detokenize(self, tokens: Iterable[str]) -> str: ...


class WordTokenizer:
    """Whitespace-split words; ``<eos>`` for each ``\\n`` (PTB: 10,000 types with it)."""

    level = "word"

    def tokenize(self, text: str) -> list[str]:
        lines = text.split("\n")
        tokens: list[str] = []
        for line in lines[:-1]:
            tokens.extend(line.split())
            tokens.append(EOS)
        tokens.extend(lines[-1].split())  # text after the last newline has no line end
        return tokens

    def detokenize(self, tokens: Iterable[str]) -> str:
        lines, words = [], []
        for token in tokens:
            if token == EOS:
                lines.append(" ".join(words))
                words = []
            else:
                words.append(token)
        lines.append(" ".join(words))
        return "\n".join(lines)


class CharTokenizer:
    """One token per Unicode code point (Korean, emoji, any script); ``<eos>`` for ``\\n``."""

    level = "char"

    def tokenize(self, text: str) -> list[str]:
        return [EOS if ch == "\n" else ch for ch in text]

    def detokenize(self, tokens: Iterable[str]) -> str:
        return "".join("\n" if t == EOS else t for t in tokens)


class SubwordTokenizer:
    """SentencePiece subword units (Kudo & Richardson 2018; unigram or BPE), learned from training text.

    Settings chosen so that any Unicode text round-trips exactly: no normalisation, whitespace kept as
    it is, and bytes for characters the model has no piece for (byte fallback). ``<eos>`` is reserved
    as a control symbol, so no piece learned from text can be mistaken for a line end."""

    level = "subword"

    def __init__(self, model: bytes) -> None:
        import sentencepiece

        self.model = model
        self._processor = sentencepiece.SentencePieceProcessor(model_proto=model)

    @classmethod
    def fit(cls, lines: Iterable[str], vocab_size: int, algorithm: str = "unigram") -> SubwordTokenizer:
        """Learn a segmentation of at most ``vocab_size`` pieces from ``lines`` (deterministic for the same text)."""
        import sentencepiece

        text = [line for line in lines if line.strip()]
        if not text:
            raise ValueError("the training text holds no line to learn subword units from")
        written = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(text), model_writer=written, vocab_size=vocab_size, model_type=algorithm,
                character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
                remove_extra_whitespaces=False, unk_id=0, unk_piece=UNK, bos_id=-1, eos_id=-1, pad_id=-1,
                control_symbols=[EOS], hard_vocab_limit=False, minloglevel=2,  # a small text may give fewer pieces
                # SentencePiece skips lines longer than this (default 4,192 bytes): let every line count
                max_sentence_length=max(4192, max(len(line.encode("utf-8")) for line in text) + 1))
        except RuntimeError as exc:
            needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(exc))
            if needed:  # every character of the text and the 256 bytes of byte fallback must be pieces
                raise ValueError(f"a vocabulary of {vocab_size} pieces is too small for this text: SentencePiece "
                                 f"needs at least {needed.group(1)} (256 byte pieces and every character it "
                                 "holds); raise data.vocab_size") from None
            raise
        return cls(written.getvalue())

    def pieces(self) -> list[str]:
        """Every piece the model can produce (its unknown and control symbols left out)."""
        processor = self._processor
        return [processor.id_to_piece(i) for i in range(processor.get_piece_size())
                if not (processor.is_control(i) or processor.is_unknown(i))]

    def tokenize(self, text: str) -> list[str]:
        lines = text.split("\n")
        tokens: list[str] = []
        for index, line in enumerate(lines):
            if line:
                tokens.extend(self._processor.encode(line, out_type=str))
            if index < len(lines) - 1:
                tokens.append(EOS)
        return tokens

    def detokenize(self, tokens: Iterable[str]) -> str:
        lines: list[str] = []
        pieces: list[str] = []
        for token in tokens:
            if token == EOS:
                lines.append(self._decode(pieces))
                pieces = []
            else:
                pieces.append(token)
        lines.append(self._decode(pieces))
        return "\n".join(lines)

    def _decode(self, pieces: Sequence[str]) -> str:
        return self._processor.decode_pieces(list(pieces)) if pieces else ""


TOKENIZERS: dict[str, type] = {"word": WordTokenizer, "char": CharTokenizer, "subword": SubwordTokenizer}


def get_tokenizer(level: str, sentencepiece_model: bytes | None = None) -> Tokenizer:
    """The tokenizer of ``level``; the subword level needs its learned model (a Vocabulary's ``sentencepiece``)."""
    if level == "subword":
        if sentencepiece_model is None:
            raise ValueError("the subword level needs its SentencePiece model (learned from the training split)")
        return SubwordTokenizer(sentencepiece_model)
    try:
        return TOKENIZERS[level]()
    except KeyError:
        raise ValueError(f"unknown tokenization level {level!r} (levels: {', '.join(TOKENIZERS)})") from None
