"""Correctness on CUDA: the recurrent stack and its dropout paths give on the GPU what they give on the CPU.

For every cell and every recurrent-dropout path (none, variational on the fused kernel, weight-drop,
per-sequence and naive step by step), residual and dense skip connections and dilated layers (folded
into the batch on the fused kernel, or step by step), the same weights, inputs and masks run on the CPU
and on CUDA (cuDNN); outputs, final states and every parameter's gradient must agree (float32
tolerances, TF32 off). The sampled, NCE and adaptive output layers likewise, on the same candidates.

    python bench/cuda_check.py                # exits 1 and names the failing case on a mismatch
    python bench/cuda_check.py --device cpu   # the same comparison against a CPU copy (checks the check)
"""

from __future__ import annotations

import copy
import sys

import torch
from torch.testing import assert_close

from common import check_device  # bench/ is on sys.path when a bench script runs
from rnnlab.nn.output import make_output_layer
from rnnlab.nn.stack import RecurrentStack

T, B, I, H, L = 12, 5, 16, 24, 2  # noqa: E741


def _moved(noise, device):
    if noise is None:
        return None
    move = lambda masks: [m if m is None else m.to(device) for m in masks]  # noqa: E731
    return type(noise)(move(noise.recurrent), move(noise.weight))


def main() -> int:
    device = check_device(__doc__.splitlines()[0], "cuda_check")
    if device is None:
        return 1
    failures = 0
    for cell in ("rnn_tanh", "rnn_relu", "lstm", "gru"):
        for kind, kwargs in (("none", {}), ("variational", {"recurrent_dropout": 0.4}),
                             ("weight_drop", {"weight_drop": 0.4}),
                             ("per_sequence", {"recurrent_dropout": 0.4,
                                               "recurrent_dropout_kind": "variational_per_sequence"}),
                             ("naive", {"recurrent_dropout": 0.4, "recurrent_dropout_kind": "naive"}),
                             ("residual", {"skip": "residual"}), ("dense", {"skip": "dense"}),
                             ("dilated 3, 2", {"dilations": (3, 2), "recurrent_dropout": 0.4}),
                             ("dilated, per_sequence", {"dilations": (2, 5), "recurrent_dropout": 0.4,
                                                        "recurrent_dropout_kind": "variational_per_sequence"})):
            torch.manual_seed(0)
            cpu = RecurrentStack(cell, I, H, L, **kwargs)
            gpu = copy.deepcopy(cpu).to(device)
            x = torch.randn(T, B, I)
            noise = cpu.sample_noise(T, B, x)
            results = []
            for stack, inputs, masks in ((cpu, x, noise), (gpu, x.to(device), _moved(noise, device))):
                out, state = stack(inputs, None, masks)
                h = state[0] if cell == "lstm" else state
                grads = torch.autograd.grad(out.square().sum() + h.sum(), list(stack.parameters()))
                results.append([out, h, *grads])
            failures += not _agree(f"{cell:<9} {kind}", *results)
    failures += _check_output_layers(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"cuda_check on {where}: {failures} failures")
    return 1 if failures else 0


def _check_output_layers(device: torch.device) -> int:
    """Sampled, NCE and adaptive output layers: the same candidates (drawn from the reseeded CPU generator on
    both sides), the same loss and gradients on the device as on the CPU; the exact loss too."""
    failures, vocab, tokens = 0, 500, 64
    counts = [1000 // (rank + 1) + 1 for rank in range(vocab)]
    for kind in ("sampled", "nce", "adaptive"):
        torch.manual_seed(0)
        cpu = make_output_layer(kind, H, vocab, counts=counts, num_samples=50, device_type=device.type).train()
        gpu = copy.deepcopy(cpu).to(device)
        hidden, targets = torch.randn(tokens, H), torch.randint(vocab, (tokens,))
        results = []
        for layer, moved in ((cpu, lambda t: t), (gpu, lambda t: t.to(device))):
            torch.manual_seed(1)  # the candidates come from the CPU generator
            loss = layer(moved(hidden), moved(targets)).loss
            exact = layer.exact_loss(moved(hidden), moved(targets)).loss
            results.append([loss, exact, *torch.autograd.grad(loss, list(layer.parameters()))])
        failures += not _agree(f"output    {kind}", *results)
    return failures


def _agree(case: str, on_cpu: list[torch.Tensor], on_device: list[torch.Tensor]) -> bool:
    """Print ok / FAIL for one case: every tensor computed on the device equals its CPU counterpart."""
    try:
        for a, b in zip(on_cpu, on_device):
            assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)
    except AssertionError as exc:
        print(f"FAIL  {case}: {str(exc).splitlines()[0]}")
        return False
    print(f"ok    {case}")
    return True


if __name__ == "__main__":
    sys.exit(main())
