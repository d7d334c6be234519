"""The recurrent stack against torch.nn's multi-layer modules holding the same weights."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from rnnlab.nn.recurrent import join_states, split_state
from rnnlab.nn.stack import WEIGHT_NAMES, RecurrentStack, multilayer_to_stack_keys

T, B, I, H, L = 6, 3, 4, 5, 3  # noqa: E741 (I: input size)

TORCH_MODULES = {
    "rnn_tanh": lambda dropout=0.0: nn.RNN(I, H, L, nonlinearity="tanh", dropout=dropout),
    "rnn_relu": lambda dropout=0.0: nn.RNN(I, H, L, nonlinearity="relu", dropout=dropout),
    "lstm": lambda dropout=0.0: nn.LSTM(I, H, L, dropout=dropout),
    "gru": lambda dropout=0.0: nn.GRU(I, H, L, dropout=dropout),
}


def _parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def _pair(cell):
    """A torch.nn multi-layer module and a stack loaded from its state_dict (torch.nn's key names)."""
    reference = TORCH_MODULES[cell]()
    stack = RecurrentStack(cell, I, H, L)
    stack.load_state_dict(reference.state_dict())
    return reference, stack


@pytest.mark.parametrize("cell", list(TORCH_MODULES))
def test_stack_equals_torch_multilayer_module_in_outputs_states_and_gradients(cell):
    reference, stack = _pair(cell)
    x = torch.randn(T, B, I, requires_grad=True)
    h0 = torch.randn(L, B, H, requires_grad=True)
    state = (h0, torch.randn(L, B, H, requires_grad=True)) if cell == "lstm" else h0

    out_ref, state_ref = reference(x, state)
    out, final = stack(x, state)
    assert_close(out, out_ref)
    for ours, theirs in zip(_parts(final), _parts(state_ref)):
        assert ours.shape == (L, B, H)
        assert_close(ours, theirs)

    # gradients through outputs and final states, to the weights, the input and the initial state
    weights = [torch.randn_like(t) for t in [out_ref, *_parts(state_ref)]]
    inputs = [x, *_parts(state)]
    ref_grads = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, [out_ref, *_parts(state_ref)])),
                                    [*inputs, *reference.parameters()])
    our_params = [p for k in range(L) for p in stack.layer_weights(k)]
    our_grads = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, [out, *_parts(final)])),
                                    [*inputs, *our_params])
    names = ["input", "h0", "c0"][: len(inputs)] + [n for n, _ in reference.named_parameters()]
    for name, ours, theirs in zip(names, our_grads, ref_grads):
        assert_close(ours, theirs, msg=name)


@pytest.mark.parametrize("cell", list(TORCH_MODULES))
def test_between_layer_dropout_is_torchs_dropout_argument(cell):
    """Same seed, same weights: the stack's between-layer dropout draws the masks torch.nn's does."""
    reference = TORCH_MODULES[cell](dropout=0.4)
    stack = RecurrentStack(cell, I, H, L, dropout=0.4)
    stack.load_state_dict(reference.state_dict())
    x = torch.randn(T, B, I)
    torch.manual_seed(3)
    out_ref, _ = reference(x)
    torch.manual_seed(3)
    out, _ = stack(x)
    assert_close(out, out_ref)
    torch.manual_seed(4)
    assert not torch.allclose(stack(x)[0], out), "dropout must act in training mode"
    assert_close(stack.eval()(x)[0], reference.eval()(x)[0])


def test_layer_weights_are_the_parameters_in_torch_layout():
    stack = RecurrentStack("gru", I, H, 2)
    params = {id(p) for p in stack.parameters()}
    for k in range(2):
        weights = stack.layer_weights(k)
        assert all(id(w) in params for w in weights)
        assert weights.weight_ih.shape == (3 * H, I if k == 0 else H) and weights.weight_hh.shape == (3 * H, H)
    x = torch.randn(T, B, I)
    before = stack(x)[0]
    with torch.no_grad():
        stack.layer_weights(1).weight_hh.zero_()
    assert not torch.allclose(stack(x)[0], before)
    assert RecurrentStack("lstm", I, H, 1, bias=False).layer_weights(0).bias_hh is None


def test_multilayer_keys_map_to_the_stacks_and_back_in_order():
    reference, stack = _pair("lstm")
    mapped = multilayer_to_stack_keys({f"rnn.{k}": v for k, v in reference.state_dict().items()}, prefix="rnn.")
    assert list(mapped) == [f"rnn.layers.{k}.{name}_l0" for k in range(L) for name in WEIGHT_NAMES]
    assert list(stack.state_dict()) == [key[len("rnn."):] for key in mapped]
    assert multilayer_to_stack_keys({"embedding.weight": 1}, prefix="rnn.") == {"embedding.weight": 1}
    back = stack.multilayer_state_dict()
    assert list(back) == list(reference.state_dict())
    assert all(torch.equal(back[k], v) for k, v in reference.state_dict().items())


def test_a_model_loads_a_state_dict_in_torch_multilayer_naming():
    from rnnlab.models import RNNLanguageModel

    model = RNNLanguageModel(11, cell="gru", embedding_dim=I, hidden_size=H, num_layers=L)
    other = RNNLanguageModel(11, cell="gru", embedding_dim=I, hidden_size=H, num_layers=L)
    old_style = {k: v for k, v in other.state_dict().items() if not k.startswith("rnn.")}
    old_style.update({f"rnn.{k}": v for k, v in other.rnn.multilayer_state_dict().items()})
    model.load_state_dict(old_style)  # the stack's load hook renames rnn.weight_ih_l{k} and the like
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


@pytest.mark.parametrize("layers", [1, 5])
def test_a_state_for_another_number_of_layers_is_refused(layers):
    stack = RecurrentStack("gru", I, H, L)
    with pytest.raises(ValueError, match=rf"shaped \({L}, B, {H}\), got \({layers}, {B}, {H}\)"):
        stack(torch.randn(T, B, I), torch.randn(layers, B, H))


def test_stack_refuses_an_unknown_cell_and_zero_layers():
    with pytest.raises(ValueError, match="unknown cell 'lstmm'"):
        RecurrentStack("lstmm", I, H)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        RecurrentStack("lstm", I, H, 0)


SIZES = (5, 7, 3)  # AWD-LSTM's shape in small: the last layer narrower, a middle one wider


def _single_layers(cell, sizes):
    """torch.nn single-layer modules of the given sizes, chained by hand: the reference composition."""
    make = {"rnn_tanh": lambda i, h: nn.RNN(i, h, nonlinearity="tanh"),
            "rnn_relu": lambda i, h: nn.RNN(i, h, nonlinearity="relu"),
            "lstm": nn.LSTM, "gru": nn.GRU}[cell]
    inputs = (I, *sizes[:-1])
    return [make(i, h) for i, h in zip(inputs, sizes)]


@pytest.mark.parametrize("cell", list(TORCH_MODULES))
def test_layers_of_different_sizes_equal_single_torch_layers_chained_by_hand(cell):
    layers = _single_layers(cell, SIZES)
    stack = RecurrentStack(cell, I, SIZES, len(SIZES))
    for k, layer in enumerate(layers):
        stack.layers[k].load_state_dict(layer.state_dict())
    assert stack.hidden_size == SIZES[-1] and stack.state_size == max(SIZES)
    x = torch.randn(T, B, I)
    initial = [tuple(torch.randn(1, B, h) for _ in range(2)) if cell == "lstm" else torch.randn(1, B, h)
               for h in SIZES]

    expected, finals = x, []
    for layer, state in zip(layers, initial):
        expected, final = layer(expected, state)
        finals.append(final)
    state = join_states(initial, max(SIZES))
    out, final = stack(x, state)
    assert out.shape == (T, B, SIZES[-1])
    assert_close(out, expected)
    for k, (ours, theirs) in enumerate(zip(split_state(final, SIZES), finals)):
        for our_part, their_part in zip(_parts(ours), _parts(theirs)):
            assert_close(our_part, their_part)
        for part in _parts(final):  # the columns beyond a narrower layer's size stay zero
            assert not part[k, :, SIZES[k]:].any()

    # gradients reach every layer's weights exactly as through the hand-chained layers
    weight = torch.randn_like(out)
    ours = torch.autograd.grad((weight * out).sum(), [p for k in range(len(SIZES)) for p in stack.layer_weights(k)])
    theirs = torch.autograd.grad((weight * expected).sum(), [p for layer in layers for p in layer.parameters()])
    for our_grad, their_grad in zip(ours, theirs):
        assert_close(our_grad, their_grad)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layers_of_different_sizes_carry_state_across_windows_and_match_the_reference_cells(cell):
    from rnnlab.nn.cells import reference_forward

    stack = RecurrentStack(cell, I, SIZES, len(SIZES)).eval()
    x = torch.randn(2 * T, B, I)
    whole, whole_state = stack(x)
    first, state = stack(x[:T])
    second, state = stack(x[T:], state)
    assert_close(torch.cat([first, second]), whole)
    for ours, theirs in zip(_parts(state), _parts(whole_state)):
        assert_close(ours, theirs)
    ref_out, ref_state = reference_forward(stack, x)
    assert_close(ref_out, whole)
    for ours, theirs in zip(_parts(ref_state), _parts(whole_state)):
        assert_close(ours, theirs)


def test_recurrent_masks_follow_each_layers_size():
    stack = RecurrentStack("lstm", I, SIZES, len(SIZES), recurrent_dropout=0.5, weight_drop=0.5)
    for kind, lead in [("variational", ()), ("variational_per_sequence", (B,)), ("naive", (T, B))]:
        stack.recurrent_dropout_kind = kind
        noise = stack.sample_noise(T, B, torch.zeros(()))
        assert [tuple(m.shape) for m in noise.recurrent] == [(*lead, h) for h in SIZES]
        assert [tuple(m.shape) for m in noise.weight] == [(4 * h, h) for h in SIZES]
        out, _ = stack.train()(torch.randn(T, B, I))
        assert out.shape == (T, B, SIZES[-1])


def test_a_sizes_list_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="one size or 3 sizes"):
        RecurrentStack("lstm", I, (5, 5), 3)
