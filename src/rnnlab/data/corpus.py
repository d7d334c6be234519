"""Corpora: a directory with train.txt / valid.txt / test.txt (PTB, WikiText), or one text file
split by ratio, or ``builtin:NAME`` for a corpus shipped inside the package.

At the subword level the SentencePiece model is learned from the training split alone (for one file
split by ratio: its first data.split[0] of lines) and kept in the vocabulary.

Tokenized id tensors are cached (``$RNNLAB_CACHE_DIR``, default ``~/.cache/rnnlab``) under a key
made of the files' bytes and every setting that changes the ids, so a second load of PTB takes
milliseconds and a changed file can never hit a stale entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from rnnlab.config import DataConfig
from rnnlab.data.tokenizers import CharTokenizer, SubwordTokenizer, Tokenizer, WordTokenizer, get_tokenizer
from rnnlab.data.vocab import Vocabulary
from rnnlab.errors import DataError
from rnnlab.io import atomic_torch_save

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
BUILTIN_PREFIX = "builtin:"
CACHE_VERSION = 4


@dataclass
class Corpus:
    vocab: Vocabulary
    level: str
    splits: dict[str, torch.Tensor]  # split name -> 1-D int64 ids
    oov: dict[str, int]  # split name -> tokens not in the vocabulary (mapped to <unk>)
    # split name -> its text's {"words": ..., "chars": ...} (text_sizes); absent for a split cut short
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    fingerprint: str = ""  # sha256 of the corpus files' bytes: a resume on changed text is refused

    def tokens(self, split: str) -> int:
        return int(self.splits[split].numel())

    def with_short_eval(self, tokens: int, test_tokens: int | None = None) -> Corpus:
        """The same corpus with validation (and test) cut to their first ``tokens``: for demos and benchmarks,
        whose evaluations show a trend or are not timed (no per-word sizes: those are a whole split's)."""
        splits = {"train": self.splits["train"], "valid": self.splits["valid"][:tokens],
                  "test": self.splits["test"][: test_tokens or tokens]}
        return Corpus(self.vocab, self.level, splits, self.oov, fingerprint=self.fingerprint)


def text_sizes(text: str) -> dict[str, int]:
    """Words (whitespace-split, a line end counting as one, as PTB's <eos>) and characters (code points, line
    ends included) of a text: what perplexity per word and per character divide by, whatever the level."""
    return {"words": len(WordTokenizer().tokenize(text)), "chars": len(CharTokenizer().tokenize(text))}


def builtin_corpora() -> list[str]:
    folder = resources.files("rnnlab.corpora")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("_"))


def resolve_data_path(path: str) -> Path:
    """``builtin:ptb`` -> the vendored copy; anything else must exist on disk."""
    if path.startswith(BUILTIN_PREFIX):
        name = path[len(BUILTIN_PREFIX):]
        if name not in builtin_corpora():
            raise DataError(f"unknown built-in corpus {name!r} (built-in: {', '.join(builtin_corpora())})")
        return Path(str(resources.files("rnnlab.corpora").joinpath(name)))
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(f"data path not found: {resolved}")
    return resolved


def load_corpus(config: DataConfig, *, use_cache: bool = True) -> Corpus:
    """Tokenize every split and build the vocabulary from the training split."""
    root = resolve_data_path(config.path)
    files = _split_files(root)
    key = _cache_key(config, files)
    cached = _read_cache(key) if use_cache else None
    if cached is not None:
        return cached
    tokenizer = _tokenizer(root, files, config)
    token_lists = _tokenize_splits(root, files, config, tokenizer)
    if isinstance(tokenizer, SubwordTokenizer):
        vocab = Vocabulary.build_subword(token_lists["train"], tokenizer.pieces(), tokenizer.model)
    else:
        vocab = Vocabulary.build(token_lists["train"], min_freq=config.min_freq, max_size=config.max_size)
    splits, oov, sizes = {}, {}, {}
    for name in SPLITS:
        splits[name], oov[name] = vocab.encode(token_lists[name])
        sizes[name] = _split_sizes(root, files, name, tokenizer, token_lists[name])
    corpus = Corpus(vocab=vocab, level=config.level, splits=splits, oov=oov, sizes=sizes,
                    fingerprint=content_fingerprint(files))
    if use_cache:
        _write_cache(key, corpus)
    return corpus


def load_split(config: DataConfig, vocab: Vocabulary, split: str) -> tuple[torch.Tensor, int, dict[str, int]]:
    """One split's ids under an existing vocabulary (a checkpoint's, segmenting as it was trained to): (ids,
    out-of-vocabulary count, text_sizes)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (splits: {', '.join(SPLITS)})")
    root = resolve_data_path(config.path)
    files = _split_files(root)
    tokenizer = get_tokenizer(config.level, vocab.sentencepiece)
    if root.is_dir():
        tokens = tokenizer.tokenize(_read_text(files[SPLITS.index(split)]))
    else:
        tokens = _tokenize_splits(root, files, config, tokenizer)[split]
    ids, oov = vocab.encode(tokens)
    return ids, oov, _split_sizes(root, files, split, tokenizer, tokens)


def _split_sizes(root: Path, files: list[Path], split: str, tokenizer: Tokenizer, tokens: list[str]) -> dict[str, int]:
    """text_sizes of a split's text: its file as written (the word level's detokenized text would lose spaces),
    or, for one file cut by tokens, the detokenized piece."""
    if root.is_dir():
        return text_sizes(_read_text(files[SPLITS.index(split)]))
    return text_sizes(tokenizer.detokenize(tokens))


def _split_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = [root / f"{name}.txt" for name in SPLITS]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{root} lacks {', '.join(missing)} (a corpus directory holds train.txt, valid.txt "
                        "and test.txt; or point data.path at one text file to split by data.split)")
    return files


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return text.removeprefix("\ufeff")  # a UTF-8 byte-order mark (Windows editors write one) is not text


def _tokenizer(root: Path, files: list[Path], config: DataConfig) -> Tokenizer:
    """The level's tokenizer; at the subword level, learned from the training text only."""
    if config.level != "subword":
        return get_tokenizer(config.level)
    if root.is_dir():
        lines = _read_text(files[0]).split("\n")
    else:
        lines = _read_text(root).split("\n")
        lines = lines[: max(1, int(len(lines) * config.split[0]))]
    try:
        return SubwordTokenizer.fit(lines, config.vocab_size, config.subword_model)
    except (ValueError, RuntimeError) as exc:
        raise DataError(f"{root}: cannot learn subword units: {str(exc).strip().splitlines()[0][:200]}") from None


def _tokenize_splits(root: Path, files: list[Path], config: DataConfig, tokenizer: Tokenizer) -> dict[str, list[str]]:
    if root.is_dir():
        return {name: tokenizer.tokenize(_read_text(path)) for name, path in zip(SPLITS, files)}
    # One file: cut the token stream into contiguous train / valid / test pieces.
    tokens = tokenizer.tokenize(_read_text(root))
    n = len(tokens)
    train_end = int(n * config.split[0])
    valid_end = train_end + int(n * config.split[1])
    pieces = {"train": tokens[:train_end], "valid": tokens[train_end:valid_end], "test": tokens[valid_end:]}
    for name, piece in pieces.items():
        if len(piece) < 2:
            raise DataError(f"{root}: data.split {list(config.split)} leaves the {name} split with "
                            f"{len(piece)} tokens of {n}; it needs at least 2")
    return pieces


# ---------------------------------------------------------------- cache


def cache_dir() -> Path:
    env = os.environ.get("RNNLAB_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnlab"


def content_fingerprint(files: list[Path]) -> str:
    """sha256 over the files' names and bytes."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return digest.hexdigest()


def _cache_key(config: DataConfig, files: list[Path]) -> str:
    digest = hashlib.sha256()
    settings = (CACHE_VERSION, config.level, config.min_freq, config.max_size,
                tuple(config.split) if len(files) == 1 else None)
    if config.level == "subword":  # another SentencePiece release may learn other pieces
        import sentencepiece

        settings += (config.vocab_size, config.subword_model, sentencepiece.__version__)
    digest.update(repr(settings).encode())
    digest.update(content_fingerprint(files).encode())
    return digest.hexdigest()[:40]


def _read_cache(key: str) -> Corpus | None:
    path = cache_dir() / f"{key}.pt"
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True)
        return Corpus(vocab=Vocabulary.from_dict(payload["vocab"]), level=payload["level"],
                      splits=payload["splits"], oov=payload["oov"], sizes=payload["sizes"],
                      fingerprint=payload["fingerprint"])
    except Exception as exc:  # a damaged cache entry is rebuilt, never fatal
        log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
        return None


def _write_cache(key: str, corpus: Corpus) -> None:
    payload = {"vocab": corpus.vocab.to_dict(), "level": corpus.level, "splits": corpus.splits,
               "oov": corpus.oov, "sizes": corpus.sizes, "fingerprint": corpus.fingerprint}
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        atomic_torch_save(payload, cache_dir() / f"{key}.pt")
    except OSError as exc:  # a read-only home must not stop training
        log.warning("could not write the corpus cache in %s (%s)", cache_dir(), exc)
