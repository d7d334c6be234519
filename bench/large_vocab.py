"""End to end at a large vocabulary: whole training steps of a 2x200 LSTM language model on a synthetic
Zipfian corpus of V = 200,000 word types, full softmax against sampled softmax (S = 1024).

    python bench/large_vocab.py                 # writes the corpus to a temporary directory first
    python bench/large_vocab.py --device cuda --vocab 793471 --billion-word   # a One-Billion-Word-shaped step

The corpus is generated here (each type once, then Zipf-distributed draws, seeded), never committed. Speed:
the variants alternate step by step in one process on the same windows (bench/common.py). Peak memory:
each variant trains alone in a child process, which reports its peak resident set (ru_maxrss).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import compare_variants  # noqa: E402

VARIANTS = {"full softmax": [], "sampled S=1024": ["model.output=sampled", "output.num_samples=1024"]}


def write_corpus(folder: Path, vocab_size: int, tokens: int, seed: int = 0) -> None:
    """train/valid/test.txt: every type w0..w{V-1} once, then ``tokens`` Zipf(1) draws, 20 words a line."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(vocab_size)]
    words = [f"w{rank}" for rank in range(vocab_size)] + rng.choices(
        [f"w{rank}" for rank in range(vocab_size)], weights=weights, k=tokens)
    rng.shuffle(words)
    folder.mkdir(parents=True, exist_ok=True)
    cut = {"train": words, "valid": words[:20_000], "test": words[20_000:40_000]}
    for split, part in cut.items():
        lines = (" ".join(part[i : i + 20]) for i in range(0, len(part), 20))
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def current_rss() -> float:
    """Resident set now, GB (Linux /proc)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def peak_rss() -> float:
    """The resident set's high-water mark, GB (Linux /proc: VmHWM)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) * 1024 / 1e9


def peak_memory(corpus: Path, overrides: list[str], steps: int) -> tuple[float, float]:
    """(resident GB once the model and data are ready, peak GB while training) of a child process that trains
    ``steps`` steps of one variant. The peak is a high-water mark: a load that peaked higher would hide it."""
    code = f"""
import gc, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from rnnlab.config import load_config
from rnnlab.data import batchify, load_corpus
from common import training_steps
from rnnlab.models import RNNLanguageModel
from large_vocab import current_rss, peak_rss
config = load_config("ptb-small", overrides={[f"data.path={corpus}", *overrides]!r})
corpus = load_corpus(config.data)
model = RNNLanguageModel.from_config(config.model, len(corpus.vocab), output_settings=config.output,
                                     counts=corpus.vocab.counts)
step = training_steps(model, batchify(corpus.splits["train"], 20), config.train)
del corpus
gc.collect()
before = current_rss()
for _ in range({steps}):
    step()
print(before, peak_rss())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, peak = map(float, out.stdout.strip().splitlines()[-1].split())
    return before, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=200_000)
    parser.add_argument("--tokens", type=int, default=1_000_000, help="Zipf draws on top of one of each type")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--billion-word", action="store_true",
                        help="the One-Billion-Word shape: embedding 512, an LSTM of 2048 units under a 512-unit top "
                             "layer (close to Jozefowicz et al.'s 2048 units projected to 512), S = 8192")
    args = parser.parse_args()
    variants = dict(VARIANTS)
    model = []
    if args.billion_word:
        model = ["model.embedding_dim=512", "model.hidden_size=2048", "model.last_layer_size=512"]
        variants = {"full softmax": [], "sampled S=8192": ["model.output=sampled", "output.num_samples=8192"]}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "zipf"
        write_corpus(corpus, args.vocab, args.tokens)
        base = [f"data.path={corpus}", "train.bptt=35", *model]
        device = torch.device(args.device)
        compare_variants("ptb-small", variants, args.steps, args.rounds, device, base)
        if device.type == "cuda":
            return  # peak memory: the resident-set figures below are for the CPU
        for name, overrides in variants.items():
            ready, peak = peak_memory(corpus, [*base, *overrides], args.steps)
            print(f"{name:<24} resident {ready:.2f} GB when ready, peak {peak:.2f} GB while training (child process, "
                  "alone)", flush=True)


if __name__ == "__main__":
    main()
