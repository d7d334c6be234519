"""Tokenization levels. Each level turns text into a list of token strings and back.

A line end is the token ``<eos>`` at every level, so ``"\\n"`` and ``<eos>`` are interchangeable:
``detokenize(tokenize(text)) == text`` for the char level, and for the word level up to whitespace.
A new level (sentencepiece subwords, say) is one more class with ``tokenize``/``detokenize``, plus
``fit(train_text)`` when it learns from the training split, registered in ``TOKENIZERS``.
"""

from __future__ import annotations

from collections.abc import Iterable
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


TOKENIZERS: dict[str, type] = {"word": WordTokenizer, "char": CharTokenizer}


def get_tokenizer(level: str) -> Tokenizer:
    try:
        return TOKENIZERS[level]()
    except KeyError:
        raise ValueError(f"unknown tokenization level {level!r} (levels: {', '.join(TOKENIZERS)})") from None
