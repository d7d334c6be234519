"""Subword units: SentencePiece learned from the training split, exact round trips, carried by checkpoints."""

import functools
import json
import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.cli import main
from rnnlab.config import load_config
from rnnlab.data.corpus import load_corpus
from rnnlab.data.tokenizers import EOS, SubwordTokenizer, get_tokenizer
from rnnlab.errors import ConfigError
from rnnlab.training.checkpoint import BEST, load_checkpoint, model_from_checkpoint
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer

from .conftest import TINY_MODEL

KOREAN = ("순환 신경망은 시간에 따라 같은 가중치를 공유한다.\n기울기가 사라지거나 폭발하는 문제가 있다.\n"
          "드롭아웃 마스크를 모든 시간 단계에 같게 유지한다.\n")
ENGLISH = "the cat sat on the mat\nthe dog ran far away from the cat\na cat and a dog sat on a mat\n"


def _training_lines():
    """2,000 lines of the sample's words in random order: enough text for either algorithm to learn words."""
    rng = random.Random(0)
    words = (ENGLISH + KOREAN).split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(2000)]


@functools.cache
def _tokenizer(algorithm="unigram"):
    return SubwordTokenizer.fit(_training_lines(), vocab_size=600, algorithm=algorithm)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_unicode_text_round_trips(text):
    tokenizer = _tokenizer()
    tokens = tokenizer.tokenize(text)
    assert tokenizer.detokenize(tokens) == text
    assert tokens.count(EOS) == text.count("\n")


@pytest.mark.parametrize("algorithm", ["unigram", "bpe"])
def test_korean_and_english_round_trip_in_learned_pieces(algorithm):
    tokenizer = _tokenizer(algorithm)
    for text in (KOREAN, ENGLISH, "  spaces  kept \n\n한국어🙂\t탭"):
        assert tokenizer.detokenize(tokenizer.tokenize(text)) == text
    pieces = tokenizer.tokenize("순환 신경망은")
    assert not any(p.startswith("<0x") for p in pieces), "seen Korean is cut into learned pieces, not bytes"
    assert len(pieces) < len("순환 신경망은"), "pieces are longer than characters"
    assert EOS not in tokenizer.pieces(), "<eos> is reserved: no piece learned from text can be a line end"


def test_learning_is_deterministic_and_needs_text():
    again = SubwordTokenizer.fit(_training_lines(), vocab_size=600)
    assert again.model == _tokenizer().model
    with pytest.raises(ValueError, match=r"needs at least \d+ \(256 byte pieces"):
        SubwordTokenizer.fit(_training_lines(), vocab_size=120)
    with pytest.raises(ValueError, match="no line"):
        SubwordTokenizer.fit(["", "  "], vocab_size=50)
    with pytest.raises(ValueError, match="SentencePiece model"):
        get_tokenizer("subword")


def test_the_corpus_learns_from_the_training_split_only(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text(ENGLISH * 30, encoding="utf-8")
    (folder / "valid.txt").write_text(KOREAN, encoding="utf-8")  # never seen in training: bytes
    (folder / "test.txt").write_text(ENGLISH, encoding="utf-8")
    config = load_config(overrides=[f"data.path={folder}", "data.level=subword", "data.vocab_size=300"]).data
    corpus = load_corpus(config)
    vocab = corpus.vocab
    assert vocab.sentencepiece is not None
    assert corpus.oov == {"train": 0, "valid": 0, "test": 0}, "byte fallback: held-out text has no unknown token"
    assert any(token.startswith("<0x") for token in vocab.decode(corpus.splits["valid"]))
    assert vocab.counts == sorted(vocab.counts, reverse=True), "ids stay frequency-sorted"
    tokenizer = get_tokenizer("subword", vocab.sentencepiece)
    assert tokenizer.detokenize(vocab.decode(corpus.splits["valid"])) == KOREAN
    assert corpus.sizes["valid"] == {"words": len(KOREAN.split()) + KOREAN.count("\n"), "chars": len(KOREAN)}
    cached = load_corpus(config)  # from the cache: the same vocabulary, segmentation included
    assert cached.vocab.to_dict() == vocab.to_dict() and torch.equal(cached.splits["valid"], corpus.splits["valid"])
    with pytest.raises(ConfigError, match="vocab_size"):
        load_config(overrides=["data.level=subword", "data.max_size=100"])


def test_a_subword_run_keeps_its_tokenizer_and_reports_per_word_perplexity(tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = [*TINY_MODEL, "data.level=subword", "data.vocab_size=300", "train.max_steps=6", "train.epochs=1"]
    config = load_config(overrides=[f"data.path={tiny_corpus_dir}", *overrides])
    Trainer(config, run).fit()
    payload = load_checkpoint(run / BEST)
    model, _, vocab = model_from_checkpoint(payload)
    assert vocab.sentencepiece == (run / "tokenizer.model").read_bytes()
    valid = [r for r in read_metrics(run / "metrics.jsonl") if r["event"] == "eval" and r["split"] == "valid"][-1]
    text = (tiny_corpus_dir / "valid.txt").read_text()
    assert valid["words"] == len(text.split()) + text.count("\n") and valid["chars"] == len(text)
    assert any(token.startswith("▁") for token in vocab.itos), "the vocabulary holds SentencePiece pieces"
    assert valid["word_ppl"] == pytest.approx(math.exp(valid["loss"] * valid["tokens"] / valid["words"]))

    assert main(["eval", "--checkpoint", str(run / BEST), "--split", "valid", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ppl"] == pytest.approx(valid["ppl"], rel=1e-9) and report["word_ppl"] == pytest.approx(
        valid["word_ppl"], rel=1e-9), "eval segments the text as training did"
    assert main(["eval", "--checkpoint", str(run / BEST), "--split", "valid"]) == 0
    assert "per word" in capsys.readouterr().out

    assert main(["generate", "--checkpoint", str(run / BEST), "--tokens", "20", "--seed", "1",
                 "--prompt", "the cat"]) == 0
    sample = capsys.readouterr().out
    assert sample.startswith("the cat") and "▁" not in sample and "<0x" not in sample, "generated text is detokenized"


def test_streamed_generation_holds_back_half_a_character(monkeypatch):
    """Byte pieces decode to U+FFFD until the character is complete: the stream waits for it, so the pieces
    joined are the final text (a model that emits 日 as three byte pieces)."""
    import rnnlab.generation as generation

    tokenizer = _tokenizer()
    steps = [[], ["▁"], ["▁", "<0xE6>"], ["▁", "<0xE6>", "<0x97>"], ["▁", "<0xE6>", "<0x97>", "<0xA5>"],
             ["▁", "<0xE6>", "<0x97>", "<0xA5>", "▁cat"]]
    monkeypatch.setattr(generation, "_sample", lambda *args: iter(steps))
    pieces = list(generation.generate_stream(None, None, tokenizer, tokens=5))
    assert "".join(pieces) == tokenizer.detokenize(steps[-1]) == "日 cat"
    assert not any("\ufffd" in piece for piece in pieces)
    assert generation.generate(None, None, tokenizer, tokens=5) == "日 cat"
