"""Reference cells against torch.nn's fused layers, and float64 gradcheck of each step."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from rnnlab.nn.cells import ReferenceRNN, Trace, reference_forward, step_function
from rnnlab.nn.stack import RecurrentStack

T, B, I, H, L = 6, 3, 4, 5, 3  # noqa: E741 (I: input size, as in the equations)

TORCH_LAYERS = {
    "rnn_tanh": lambda: nn.RNN(I, H, L, nonlinearity="tanh"),
    "rnn_relu": lambda: nn.RNN(I, H, L, nonlinearity="relu"),
    "lstm": lambda: nn.LSTM(I, H, L),
    "gru": lambda: nn.GRU(I, H, L),
}


def _states(cell, state):
    return list(state) if cell == "lstm" else [state]


@pytest.mark.parametrize("cell", list(TORCH_LAYERS))
def test_reference_equals_torch_outputs_states_and_gradients(cell):
    fused = TORCH_LAYERS[cell]()
    reference = ReferenceRNN(cell, I, H, L)
    reference.load_state_dict(fused.state_dict())  # same names, shapes and gate order
    x = torch.randn(T, B, I)
    h0 = torch.randn(L, B, H)
    hx = (h0, torch.randn(L, B, H)) if cell == "lstm" else h0

    out_ref, state_ref = reference(x, hx)
    out_fused, state_fused = fused(x, hx)
    assert_close(out_ref, out_fused)
    for a, b in zip(_states(cell, state_ref), _states(cell, state_fused)):
        assert_close(a, b)

    weights = torch.randn_like(out_fused)
    (out_ref * weights).sum().backward()
    (out_fused * weights).sum().backward()
    for name, param in fused.named_parameters():
        assert_close(getattr(reference, name).grad, param.grad, msg=name)


@pytest.mark.parametrize("cell", list(TORCH_LAYERS))
def test_reference_forward_runs_on_a_stacks_own_weights(cell):
    stack = RecurrentStack(cell, I, H, L, dropout=0.5).eval()
    x = torch.randn(T, B, I)
    trace = Trace()
    out, _ = reference_forward(stack, x, trace=trace)
    assert_close(out, stack(x)[0])
    # the very parameters: a change to the stack's weights changes the reference path
    with torch.no_grad():
        stack.layer_weights(L - 1).weight_hh.mul_(2.0)
    assert_close(reference_forward(stack, x)[0], stack(x)[0])
    assert not torch.allclose(reference_forward(stack, x)[0], out)
    assert len(trace.hidden) == L and len(trace.hidden[0]) == T
    assert_close(torch.stack(trace.hidden[-1]), out)
    if cell == "lstm":
        assert set(trace.steps[0][0]) == {"i", "f", "g", "o", "z_g", "c"} and len(trace.cell[0]) == T


@pytest.mark.parametrize("cell", list(TORCH_LAYERS))
def test_each_cell_step_passes_float64_gradcheck(cell):
    torch.manual_seed(0)
    rows = {"lstm": 4, "gru": 3}.get(cell, 1) * H
    x = torch.randn(2, I, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    weights = [torch.randn(rows, I, dtype=torch.float64, requires_grad=True) * 0.5,
               torch.randn(rows, H, dtype=torch.float64, requires_grad=True) * 0.5,
               torch.randn(rows, dtype=torch.float64, requires_grad=True),
               torch.randn(rows, dtype=torch.float64, requires_grad=True)]
    weights = [w.detach().requires_grad_() for w in weights]
    step = step_function(cell)

    def f(x, h, c, *w):
        h_new, c_new, _ = step(x, h, c, *w)
        return (h_new, c_new) if c_new is not None else h_new

    if cell == "rnn_relu":  # keep pre-activations away from relu's kink at 0
        with torch.no_grad():
            z = x @ weights[0].t() + h @ weights[1].t() + weights[2] + weights[3]
            weights[2] += torch.where(z.abs().min(0).values < 1e-3, 0.1, 0.0)
    assert torch.autograd.gradcheck(f, (x, h, c, *weights))
