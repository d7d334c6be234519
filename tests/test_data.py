import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.config import DataConfig
from rnnlab.data import EOS, UNK, Vocabulary, batchify, bptt_windows, eval_stream, get_tokenizer, load_corpus
from rnnlab.data.batching import IGNORE_INDEX, num_windows
from rnnlab.data.corpus import load_split
from rnnlab.errors import DataError


@pytest.mark.integration
def test_ptb_word_level_has_10000_frequency_sorted_types():
    corpus = load_corpus(DataConfig(path="builtin:ptb", level="word"))
    assert len(corpus.vocab) == 10_000
    assert {k: v.numel() for k, v in corpus.splits.items()} == {"train": 929_589, "valid": 73_760, "test": 82_430}
    assert corpus.oov == {"train": 0, "valid": 0, "test": 0}
    counts = torch.bincount(corpus.splits["train"], minlength=10_000)
    assert torch.all(counts[:-1] >= counts[1:]), "ids must be sorted by decreasing training frequency"
    assert counts.tolist() == corpus.vocab.counts
    assert corpus.vocab.itos[0] == "the"


def test_vocabulary_breaks_frequency_ties_by_token():
    vocab = Vocabulary.build("b a c a b d".split())
    # a:2 b:2, then c d <eos> <unk> ... tie-broken by code points, the specials at count 0 last
    assert vocab.itos == ["a", "b", "c", "d", EOS, UNK]
    assert Vocabulary.build("b a c a b d".split()).itos == Vocabulary.build("d b c b a a".split()).itos


def test_min_freq_and_max_size_send_pruned_counts_to_unk():
    tokens = "a a a a b b b c c d".split()
    vocab = Vocabulary.build(tokens, min_freq=2)
    assert vocab.itos[:3] == ["a", "b", "c"] and "d" not in vocab.stoi
    assert vocab.counts[vocab.unk_id] == 1
    capped = Vocabulary.build(tokens, max_size=3)  # <unk>, <eos> and one more
    assert len(capped) == 3 and capped.itos[0] == UNK and capped.counts[0] == 6
    ids, oov = capped.encode("a b zz".split())
    assert ids.tolist() == [capped.stoi["a"], capped.unk_id, capped.unk_id] and oov == 2


def test_out_of_vocabulary_tokens_are_counted(tiny_corpus_dir):
    (tiny_corpus_dir / "valid.txt").write_text("the zebra sat\nunicorn\n", encoding="utf-8")
    corpus = load_corpus(DataConfig(path=str(tiny_corpus_dir)))
    assert corpus.oov["valid"] == 2
    assert corpus.vocab.decode(corpus.splits["valid"]) == ["the", UNK, "sat", EOS, UNK, EOS]


def test_word_tokenizer_marks_line_ends():
    tok = get_tokenizer("word")
    assert tok.tokenize(" a b \nc\n") == ["a", "b", EOS, "c", EOS]
    assert tok.tokenize("a b") == ["a", "b"]
    assert tok.detokenize(["a", "b", EOS, "c"]) == "a b\nc"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_char_level_round_trips_any_unicode_text(text):
    tok = get_tokenizer("char")
    tokens = tok.tokenize(text)
    assert tok.detokenize(tokens) == text
    vocab = Vocabulary.build(tokens)
    ids, oov = vocab.encode(tokens)
    assert oov == 0
    assert tok.detokenize(vocab.decode(ids)) == text


def test_char_level_reads_korean(tmp_path):
    text = "효과적인 RNN 학습\n그래디언트 문제\n" * 20
    path = tmp_path / "ko.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus(DataConfig(path=str(path), level="char", split=(0.8, 0.1, 0.1)))
    assert "효" in corpus.vocab.stoi and EOS in corpus.vocab.stoi
    joined = torch.cat([corpus.splits[s] for s in ("train", "valid", "test")])
    assert get_tokenizer("char").detokenize(corpus.vocab.decode(joined)) == text


def test_single_file_is_split_contiguously_by_ratio(tmp_path):
    path = tmp_path / "all.txt"
    path.write_text(" ".join(f"w{i}" for i in range(100)), encoding="utf-8")
    corpus = load_corpus(DataConfig(path=str(path), split=(0.8, 0.1, 0.1)))
    assert [corpus.splits[s].numel() for s in ("train", "valid", "test")] == [80, 10, 10]
    assert corpus.vocab.decode(corpus.splits["test"][:1]) == [UNK]  # w90 never occurs in train
    ids, oov, _ = load_split(DataConfig(path=str(path), split=(0.8, 0.1, 0.1)), corpus.vocab, "test")
    assert torch.equal(ids, corpus.splits["test"]) and oov == 10


def test_missing_corpus_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_corpus(DataConfig(path=str(tmp_path / "nope")))
    (tmp_path / "train.txt").write_text("a b\n", encoding="utf-8")
    with pytest.raises(DataError, match="lacks valid.txt, test.txt"):
        load_corpus(DataConfig(path=str(tmp_path)))
    with pytest.raises(DataError, match="unknown built-in corpus"):
        load_corpus(DataConfig(path="builtin:wikitext"))


def test_non_utf8_text_is_a_data_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(DataError, match="not UTF-8"):
        load_corpus(DataConfig(path=str(path)))


def test_cache_returns_the_same_corpus_and_notices_changes(tiny_corpus_dir, monkeypatch):
    import rnnlab.data.corpus as corpus_module

    config = DataConfig(path=str(tiny_corpus_dir))
    first = load_corpus(config)
    tokenize = corpus_module._tokenize_splits

    def must_not_tokenize(*args, **kwargs):
        raise AssertionError("a second load must come from the cache")

    monkeypatch.setattr(corpus_module, "_tokenize_splits", must_not_tokenize)
    second = load_corpus(config)
    monkeypatch.setattr(corpus_module, "_tokenize_splits", tokenize)
    assert first.vocab.itos == second.vocab.itos
    assert all(torch.equal(first.splits[s], second.splits[s]) for s in first.splits)
    (tiny_corpus_dir / "train.txt").write_text("zebra zebra\n" * 5, encoding="utf-8")
    assert load_corpus(config).vocab.itos[0] == "zebra"


def test_batchify_makes_contiguous_columns():
    data = batchify(torch.arange(26), 4)  # 26 // 4 = 6 rows, 2 tokens dropped
    assert data.shape == (6, 4)
    assert data[:, 1].tolist() == [6, 7, 8, 9, 10, 11]


def test_batchify_refuses_too_few_tokens():
    with pytest.raises(DataError, match="too few"):
        batchify(torch.arange(5), 4)
    with pytest.raises(DataError, match="empty split"):
        eval_stream(torch.arange(0), 2, eos_id=0)


def test_bptt_windows_cover_every_target_once():
    data = batchify(torch.arange(43), 3)  # (14, 3)
    windows = list(bptt_windows(data, 4))
    assert len(windows) == num_windows(14, 4) == 4
    inputs = torch.cat([x for x, _ in windows])
    targets = torch.cat([y for _, y in windows])
    assert torch.equal(inputs, data[:-1]) and torch.equal(targets, data[1:])
    assert [x.size(0) for x, _ in windows] == [4, 4, 4, 1]
    assert len(list(bptt_windows(data, 4, start=2))) == 2


@pytest.mark.parametrize("n, batch_size", [(1, 3), (10, 3), (12, 4), (7, 10)])
def test_eval_stream_scores_every_token_exactly_once(n, batch_size):
    ids = torch.arange(100, 100 + n)
    stream = eval_stream(ids, batch_size, eos_id=0)
    assert stream.tokens == n
    # Column-major reading order gives the split back, each target after its own input.
    targets = stream.targets.t().reshape(-1)
    inputs = stream.inputs.t().reshape(-1)
    real = targets != IGNORE_INDEX
    assert torch.equal(targets[real], ids)
    assert torch.equal(inputs[real], torch.cat([torch.tensor([0]), ids[:-1]]))
