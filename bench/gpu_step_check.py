"""The training step on CUDA: no host synchronisation, CUDA-graph replay equal to the eager step, bf16 autocast.

1. ``torch.cuda.set_sync_debug_mode("error")`` around rnnlab's train_step for each cell, with variational
   recurrent dropout, and the sampled / NCE output layers: any operation that waits for the GPU raises.
   (The adaptive softmax is known to sync: torch's module picks each cluster's rows with nonzero().)
2. train.cuda_graphs: a CapturedStep (warm-up, capture, replays, a short window, a fresh state, an lr change)
   against the plain step on a copy of the model: losses, states and weights agree (cuDNN deterministic, TF32
   off; dropout off, since a replay draws its masks from the graph's own generator offsets).
3. train.precision = bf16: one autocast step keeps the loss and every gradient float32, within 2% of float32.

    python bench/gpu_step_check.py                 # exits 1 and names the failing part
    python bench/gpu_step_check.py --device cpu    # a dry run of parts 2-3 (graph replays rerun the step)
"""

from __future__ import annotations

import sys

import torch
from torch.testing import assert_close

from common import check_device  # bench/ is on sys.path when a bench script runs
from rnnlab.config import load_config
from rnnlab.models import RNNLanguageModel
from rnnlab.training.graphs import CapturedStep, CudaGraphs, Rerun
from rnnlab.training.loop import train_step
from rnnlab.training.optim import make_optimizer

V, E, H, T, B = 1000, 64, 64, 20, 8


def _model(device: torch.device, *overrides: str) -> tuple[RNNLanguageModel, torch.optim.Optimizer]:
    """The same weights for the same overrides; a fresh optimizer (use ``_twin`` for a second copy)."""
    config = load_config(overrides=[f"model.embedding_dim={E}", f"model.hidden_size={H}", "output.num_samples=64",
                                    *overrides])
    torch.manual_seed(0)
    model = RNNLanguageModel.from_config(config.model, V, config.regularization, output_settings=config.output,
                                         counts=[V - i for i in range(V)]).to(device)
    return model, make_optimizer(model.parameters(), config.train)


def _batch(device: torch.device, length: int = T) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(V, (length, B), device=device), torch.randint(V, (length, B), device=device)


def check_no_sync(device: torch.device) -> int:
    failures = 0
    cases = [["model.cell=lstm"], ["model.cell=gru"], ["model.cell=rnn_tanh"],
             ["model.cell=lstm", "regularization.recurrent_dropout=0.3", "regularization.hidden_dropout=0.3",
              "regularization.dropout_kind=variational"],
             ["model.cell=lstm", "model.output=sampled"], ["model.cell=lstm", "model.output=nce"]]
    for overrides in cases:
        model, optimizer = _model(device, *overrides)
        inputs, targets = _batch(device)
        state = train_step(model, optimizer, inputs, targets, None, clip_norm=0.25, loss_average="tokens").state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(2):
                state = train_step(model, optimizer, inputs, targets, state, clip_norm=0.25,
                                   loss_average="tokens").state
            print(f"ok    no sync: {' '.join(overrides)}")
        except RuntimeError as exc:
            failures += 1
            print(f"FAIL  no sync: {' '.join(overrides)}: {str(exc).splitlines()[0]}")
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return failures


def check_graph_replay(device: torch.device) -> int:
    failures = 0
    for optimizer_kind in ("sgd", "adam"):
        setting = f"train.optimizer={optimizer_kind}"
        eager_model, eager_opt = _model(device, setting)
        model, opt = _model(device, setting)
        graphs = CudaGraphs() if device.type == "cuda" else Rerun()
        captured = CapturedStep(model, opt, clip_norm=0.25, loss_average="tokens", graphs=graphs, warmup=3)
        torch.manual_seed(1)
        windows = [(*_batch(device), False) for _ in range(6)]
        windows += [(*_batch(device, 7), False), (*_batch(device), True), (*_batch(device), False)]
        state = eager_state = None
        try:
            for index, (inputs, targets, fresh) in enumerate(windows):
                if fresh:
                    state = eager_state = None
                if index == 7:  # a schedule's lr change between epochs
                    for o in (opt, eager_opt):
                        o.param_groups[0]["lr"] *= 0.5
                expected = train_step(eager_model, eager_opt, inputs, targets, eager_state, clip_norm=0.25,
                                      loss_average="tokens")
                got = captured(inputs, targets, state)
                assert_close(got.loss, expected.loss, rtol=1e-5, atol=1e-5)
                for a, b in zip(got.state, expected.state):
                    assert_close(a, b, rtol=1e-4, atol=1e-5)
                state, eager_state = got.state, expected.state
            for a, b in zip(model.parameters(), eager_model.parameters()):
                assert_close(a, b, rtol=1e-4, atol=1e-5)
            print(f"ok    cuda graph replay = eager step ({optimizer_kind}; {captured.replays} replays, "
                  f"{captured.eager_steps} eager)")
        except (AssertionError, RuntimeError) as exc:
            failures += 1
            print(f"FAIL  cuda graph replay ({optimizer_kind}): {str(exc).splitlines()[0]}")
    return failures


def check_bf16(device: torch.device) -> int:
    cell = "lstm" if device.type == "cuda" else "rnn_tanh"  # this CPU's oneDNN has no bf16 LSTM
    model, optimizer = _model(device, f"model.cell={cell}")
    twin, twin_opt = _model(device, f"model.cell={cell}")
    inputs, targets = _batch(device)
    fp32 = train_step(twin, twin_opt, inputs, targets, None, clip_norm=0.0, loss_average="tokens")
    bf16 = train_step(model, optimizer, inputs, targets, None, clip_norm=0.0, loss_average="tokens",
                      autocast=torch.bfloat16)
    ratio = bf16.loss.item() / fp32.loss.item()
    dtypes = {p.grad.dtype for p in model.parameters() if p.grad is not None} | {bf16.loss.dtype}
    ok = dtypes == {torch.float32} and abs(ratio - 1) < 0.02
    print(f"{'ok  ' if ok else 'FAIL'}  bf16 autocast step: loss / fp32 loss = {ratio:.5f}, "
          f"dtypes {sorted(map(str, dtypes))}")
    return 0 if ok else 1


def main() -> int:
    device = check_device(__doc__.splitlines()[0], "gpu_step_check")
    if device is None:
        return 1
    torch.backends.cudnn.deterministic = True
    failures = check_no_sync(device) if device.type == "cuda" else 0
    failures += check_graph_replay(device) + check_bf16(device)
    print(f"gpu_step_check on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}: "
          f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
