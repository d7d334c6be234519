"""Output layers at large vocabularies: forward + backward of the output layer alone, full softmax against
sampled softmax, NCE and adaptive softmax, on the same hidden states and targets.

    python bench/output_speed.py                # V = 10k, 100k, 793,471; d 512; 2,560 tokens; S = 1024, 8192
    python bench/output_speed.py --crossover    # the vocabulary size from which sampled pays (model.output = auto)

Targets are drawn Zipfian (log-uniform over the frequency-sorted ids, as real text is). Calls alternate
variant by variant, so the machine's drift hits all of them alike; the ratio is full's time over each
variant's. A variant whose logits would not fit in --max-gb is reported as not run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import time_alternating  # noqa: E402
from rnnlab.nn.output import CandidateSampler, frequency_cutoffs, make_output_layer  # noqa: E402


def zipf_counts(vocab_size: int) -> list[int]:
    """Counts proportional to 1 / (rank + 1): the unigram sampler's and adaptive's cutoffs' input."""
    return [max(1, round(1e7 / (rank + 1))) for rank in range(vocab_size)]


def layer_pass(layer: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor):
    def run() -> None:
        layer.zero_grad(set_to_none=True)
        hidden.grad = None
        layer(hidden, targets).loss.backward()
    return run


def variants(vocab: int, dim: int, samples: list[int]) -> dict[str, dict]:
    out = {"full": {"kind": "softmax"}}
    for s in samples:
        out[f"sampled S={s}"] = {"kind": "sampled", "num_samples": s}
    out[f"nce S={samples[0]}"] = {"kind": "nce", "num_samples": samples[0]}
    out["adaptive"] = {"kind": "adaptive"}
    return out


def measure(vocab: int, dim: int, tokens: int, samples: list[int], steps: int, max_gb: float,
            only: set[str] | None = None, device: torch.device | None = None) -> dict[str, float]:
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    counts = zipf_counts(vocab)
    hidden = torch.randn(tokens, dim, device=device, requires_grad=True)
    targets = CandidateSampler("log_uniform", vocab).draw(tokens, replacement=True).ids.to(device)
    runs, skipped = {}, []
    for name, spec in variants(vocab, dim, samples).items():
        if only is not None and name.split()[0] not in only:
            continue
        # logits, their softmax and gradient: about three (tokens, V) float32 tensors for the full softmax
        need_gb = 3 * 4 * tokens * vocab / 1e9 if spec["kind"] == "softmax" else 0.0
        if need_gb > max_gb:
            skipped.append(f"{name} (needs ~{need_gb:.0f} GB of logits > --max-gb {max_gb:g})")
            continue
        kind = spec.pop("kind")
        layer = make_output_layer(kind, dim, vocab, counts=counts, device_type=device.type, **spec).to(device).train()
        runs[name] = layer_pass(layer, hidden, targets)
    spent = time_alternating(runs, steps, device)
    for line in skipped:
        print(f"  not run: {line}")
    return {name: 1000 * seconds / steps for name, seconds in spent.items()}


def report(vocab: int, times: dict[str, float]) -> None:
    full = times.get("full")
    for name, ms in times.items():
        ratio = f"  {full / ms:6.2f}x full" if full else ""
        print(f"  V={vocab:<8} {name:<16} {ms:10.1f} ms{ratio}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[10_000, 100_000, 793_471])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=2560)
    parser.add_argument("--samples", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--steps", type=int, default=5, help="timed calls per variant")
    parser.add_argument("--max-gb", type=float, default=12.0, help="skip a full softmax whose logits need more")
    parser.add_argument("--crossover", action="store_true",
                        help="full vs sampled (S = --samples[0]) over growing V at the LM step's shape (700 tokens, "
                             "d = --dim): the smallest V where sampled is faster")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}")
    if args.crossover:
        print(f"crossover: d {args.dim}, 700 tokens (batch 20 x bptt 35), S {args.samples[0]}")
        sizes = [1_500, 2_000, 3_000, 4_000, 6_000, 8_000, 12_000, 16_000]
        if device.type == "cuda":  # ANCHORS.md: on an H200 the full softmax still wins at 10k
            sizes += [25_000, 50_000, 100_000]
        for vocab in sizes:
            times = measure(vocab, args.dim, 700, args.samples[:1], args.steps, args.max_gb, only={"full", "sampled"},
                            device=device)
            report(vocab, times)
        return
    print(f"d {args.dim}, {args.tokens} tokens, {args.steps} calls per variant, alternating")
    for vocab in args.vocab:
        report(vocab, measure(vocab, args.dim, args.tokens, args.samples, args.steps, args.max_gb, device=device))
        print(f"  (V={vocab}: adaptive cutoffs {frequency_cutoffs(zipf_counts(vocab))})")


if __name__ == "__main__":
    main()
