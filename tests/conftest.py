import random

import pytest
import torch


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory, monkeypatch):
    """Every test: its own corpus cache, a fixed seed, and no stray threads from earlier tests."""
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def tiny_corpus_dir(tmp_path):
    """A corpus directory with ~11 word types: train/valid/test.txt."""
    rng = random.Random(0)
    words = "the cat sat on a mat and dog ran far".split()
    folder = tmp_path / "tiny"
    folder.mkdir()
    for split, lines in (("train", 120), ("valid", 20), ("test", 20)):
        text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(lines))
        (folder / f"{split}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


TINY_MODEL = ["model.hidden_size=8", "model.embedding_dim=8", "train.batch_size=4", "train.bptt=5",
              "train.eval_batch_size=3", "train.log_every=1"]
