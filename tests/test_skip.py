"""Skip connections (residual, dense) and dilated recurrence against hand-written compositions of
single torch.nn layers holding the same weights, and the fused path against the reference cells."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from rnnlab.nn.cells import reference_forward
from rnnlab.nn.recurrent import join_states, split_state
from rnnlab.nn.stack import RecurrentStack, StackNoise

T, B, I, H = 7, 3, 4, 5  # noqa: E741 (I: input size)
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def _torch_layer(cell, input_size, hidden_size):
    if cell == "lstm":
        return nn.LSTM(input_size, hidden_size)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size)
    return nn.RNN(input_size, hidden_size, nonlinearity=cell[len("rnn_"):])


def _copy_of_layer(stack, k):
    layer = _torch_layer(stack.cell, stack.layers[k].input_size, stack.layer_sizes[k])
    layer.load_state_dict(stack.layers[k].state_dict())
    return layer


def _parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def _grads(output, params):
    return torch.autograd.grad((output * torch.linspace(-1, 1, output.numel()).view_as(output)).sum(), params)


@pytest.mark.parametrize("cell", CELLS)
def test_residual_stack_is_each_layer_plus_its_input(cell):
    stack = RecurrentStack(cell, I, H, 3, skip="residual").eval()
    assert isinstance(stack.shortcuts[0], nn.Linear) and isinstance(stack.shortcuts[1], nn.Identity)
    x = torch.randn(T, B, I)
    layers = [_copy_of_layer(stack, k) for k in range(3)]
    projection = stack.shortcuts[0].weight  # (H, I): the input is narrower than the layers
    expected = layers[0](x)[0] + x @ projection.t()
    for layer in layers[1:]:
        expected = layer(expected)[0] + expected
    out, _ = stack(x)
    assert_close(out, expected)
    ours = _grads(out, [p for layer in stack.layers for p in layer.parameters()] + [stack.shortcuts[0].weight])
    theirs = _grads(expected, [p for layer in layers for p in layer.parameters()] + [projection])
    for a, b in zip(ours, theirs):
        assert_close(a, b)


@pytest.mark.parametrize("cell", CELLS)
def test_dense_stack_feeds_the_input_to_every_layer_and_every_layer_to_the_output(cell):
    stack = RecurrentStack(cell, I, H, 3, skip="dense").eval()
    assert [layer.input_size for layer in stack.layers] == [I, I + H, I + H]
    x = torch.randn(T, B, I)
    layers = [_copy_of_layer(stack, k) for k in range(3)]
    h0 = layers[0](x)[0]
    h1 = layers[1](torch.cat([x, h0], -1))[0]
    h2 = layers[2](torch.cat([x, h1], -1))[0]
    expected = torch.cat([h0, h1, h2], -1) @ stack.readout.weight.t()
    out, _ = stack(x)
    assert out.shape == (T, B, H)
    assert_close(out, expected)
    ours = _grads(out, [p for layer in stack.layers for p in layer.parameters()] + [stack.readout.weight])
    theirs = _grads(expected, [p for layer in layers for p in layer.parameters()] + [stack.readout.weight])
    for a, b in zip(ours, theirs):
        assert_close(a, b)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("d", [2, 3])
def test_a_dilated_layer_is_the_plain_layer_on_each_interleaved_subsequence(cell, d):
    stack = RecurrentStack(cell, I, H, 1, dilations=[d]).eval()
    layer = _copy_of_layer(stack, 0)
    x = torch.randn(T, B, I)
    out, final = stack(x)
    for r in range(d):
        expected, _ = layer(x[r::d])  # steps r, r + d, ...: a sequence of its own
        assert_close(out[r::d], expected)
    # the state holds the last d steps, oldest first: h of the last d outputs
    assert _parts(final)[0].shape == (d, B, H)
    assert_close(_parts(final)[0], out[-d:])


@pytest.mark.parametrize("cell", CELLS)
def test_dilations_of_one_are_bitwise_torchs_multilayer_module(cell):
    stack = RecurrentStack(cell, I, H, 2, dilations=[1, 1])
    reference = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell, lambda i, h, n: nn.RNN(i, h, n, nonlinearity=cell[4:]))(
        I, H, 2)
    reference.load_state_dict(stack.multilayer_state_dict())
    x = torch.randn(T, B, I)
    (a, state_a), (b, state_b) = stack(x), reference(x)
    assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(_parts(state_a), _parts(state_b)))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("windows", [[7, 7], [5, 2, 9], [1, 2, 1, 10]])  # multiples of d or not, shorter than d
def test_state_carried_across_windows_equals_one_long_pass(cell, windows):
    stack = RecurrentStack(cell, I, (H, 6, H), 3, dilations=[1, 4, 3], skip="residual").eval()
    x = torch.randn(sum(windows), B, I)
    whole, whole_state = stack(x)
    outputs, state, begin = [], None, 0
    for length in windows:
        out, state = stack(x[begin : begin + length], state)
        outputs.append(out)
        begin += length
    assert_close(torch.cat(outputs), whole)
    for ours, theirs in zip(_parts(state), _parts(whole_state)):
        assert ours.shape == (1 + 4 + 3, B, 6)
        assert_close(ours, theirs)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("skip", ["none", "residual", "dense"])
def test_fused_and_reference_paths_agree_for_every_skip_and_dilation(cell, skip):
    stack = RecurrentStack(cell, I, (H, 6, 4), 3, skip=skip, dilations=[1, 2, 3], dropout=0.3).eval()
    x = torch.randn(T, B, I, requires_grad=True)
    state = join_states([tuple(torch.randn(d, B, h) for _ in range(2)) if cell == "lstm" else torch.randn(d, B, h)
                         for d, h in zip((1, 2, 3), (H, 6, 4))], 6)
    out, final = stack(x, state)
    ref_out, ref_final = reference_forward(stack, x, state)
    assert_close(ref_out, out)
    for ours, theirs in zip(_parts(ref_final), _parts(final)):
        assert_close(ours, theirs)
    params = [x, *stack.parameters()]
    for a, b in zip(_grads(out, params), _grads(ref_out, params)):
        assert_close(a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_dilated_layer_with_per_sequence_masks_runs_step_by_step_like_the_fused_variational_one(cell):
    """Two windows with the state carried: the step-by-step path (a (B, H) mask) equals the fused one
    (the same mask for every sequence, as masked W_hh columns), outputs and final states."""
    stack = RecurrentStack(cell, I, H, 2, dilations=[2, 3], recurrent_dropout=0.5,
                           recurrent_dropout_kind="variational_per_sequence").train()
    masks = [torch.bernoulli(torch.full((H,), 0.5)) * 2 for _ in range(2)]
    x = torch.randn(T + 4, B, I)
    fused_state = stepwise_state = None
    for window in (x[:T], x[T:]):  # 7 and 4 steps: neither a multiple of 2 or 3
        shared, fused_state = stack(window, fused_state, StackNoise(masks, [None, None]))
        per_sequence, stepwise_state = stack(window, stepwise_state,
                                             StackNoise([m.expand(B, H) for m in masks], [None, None]))
        assert_close(per_sequence, shared)
        for ours, theirs in zip(_parts(stepwise_state), _parts(fused_state)):
            assert ours.shape == (2 + 3, B, H)
            assert_close(ours, theirs)


def test_skip_and_dilations_are_checked():
    with pytest.raises(ValueError, match="unknown skip 'highway'"):
        RecurrentStack("lstm", I, H, 2, skip="highway")
    with pytest.raises(ValueError, match=r"dilations must be 2 integers >= 1, got \[1, 0\]"):
        RecurrentStack("lstm", I, H, 2, dilations=[1, 0])
    stack = RecurrentStack("gru", I, H, 2, dilations=[1, 2])
    with pytest.raises(ValueError, match=r"shaped \(3, B, 5\), got \(2, 3, 5\)"):
        stack(torch.randn(T, B, I), torch.zeros(2, B, H))
    assert [tuple(s.shape) for s in split_state(torch.zeros(3, B, H), (H, H), (1, 2))] == [(1, B, H), (2, B, H)]


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_reference_path_starts_a_dilated_layer_from_zeros_like_the_fused_one(cell):
    stack = RecurrentStack(cell, I, H, 2, dilations=[3, 2]).eval()
    x = torch.randn(T, B, I)
    out, final = stack(x)
    ref_out, ref_final = reference_forward(stack, x)
    assert_close(ref_out, out)
    for ours, theirs in zip(_parts(ref_final), _parts(final)):
        assert_close(ours, theirs)


def test_the_residual_shortcut_carries_the_input_past_the_dropout():
    stack = RecurrentStack("gru", H, H, 2, dropout=0.5, skip="residual").train()
    seen = {}
    for k, layer in enumerate(stack.layers):
        layer.register_forward_hook(lambda module, args, output, k=k: seen.update({k: (args[0], output[0])}))
    x = torch.randn(T, B, H)
    out, _ = stack(x)
    dropped_input, layer_output = seen[1]
    below = seen[0][1] + x  # the first layer's output with its own shortcut
    assert not torch.equal(dropped_input, below)  # the layer read a dropped copy ...
    assert_close(out, layer_output + below)  # ... the shortcut added the undropped one
