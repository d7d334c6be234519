"""Dropout that works for RNNs: locked masks, recurrent dropout on the fused kernel against the
reference cells, weight-drop, embedding dropout, AR/TAR, and "everything off changes nothing"."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from rnnlab.config import RegularizationConfig, load_config
from rnnlab.models import RNNLanguageModel
from rnnlab.nn.cells import step_function
from rnnlab.nn.dropout import LockedDropout, activation_penalty
from rnnlab.nn.stack import RecurrentStack, StackNoise
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer

from .conftest import TINY_MODEL

T, B, I, H, L = 7, 4, 5, 6, 2  # noqa: E741 (I: input size)
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def test_locked_dropout_mask_is_shared_across_time_and_redrawn_per_call():
    drop = LockedDropout(0.5)
    x = torch.ones(T, B, H)
    first, second = drop(x), drop(x)
    for t in range(T):
        assert torch.equal(first[t], first[0])  # one mask for every step of the window
    assert not torch.equal(first, second)  # the next window draws a new one
    assert set(first.unique().tolist()) <= {0.0, 2.0}
    mean = torch.stack([drop(x)[0] for _ in range(4000)]).mean(0)
    assert_close(mean, torch.ones(B, H), atol=0.08, rtol=0)  # unbiased: E[mask] = 1
    drop.eval()
    assert torch.equal(drop(x), x)


def _reference_with_masks(stack: RecurrentStack, x, state, masks):
    """The reference cells with h_{t-1} * mask[t] in the W_hh product, layer after layer (eval-mode stack)."""
    step = step_function(stack.cell)
    layer_input, finals_h, finals_c = x, [], []
    for k in range(stack.num_layers):
        w = stack.layer_weights(k)
        h = state[0][k] if stack.cell == "lstm" else state[k]
        c = state[1][k] if stack.cell == "lstm" else None
        outputs = []
        for t in range(x.size(0)):
            h, c, _ = step(layer_input[t], h, c, *w, h_mask=masks[k][t])
            outputs.append(h)
        layer_input = torch.stack(outputs)
        finals_h.append(h)
        finals_c.append(c)
    return layer_input, torch.stack(finals_h)


def _state(cell):
    h0 = torch.randn(L, B, H)
    return (h0, torch.randn(L, B, H)) if cell == "lstm" else h0


def _grads(output, final_h, params):
    weights = torch.linspace(-1, 1, output.numel()).view_as(output)
    return torch.autograd.grad((output * weights).sum() + final_h.sum(), params)


@pytest.mark.parametrize("cell", CELLS)
def test_column_masked_w_hh_on_the_fused_kernel_equals_masking_h_in_the_reference_cells(cell):
    torch.manual_seed(1)
    stack = RecurrentStack(cell, I, H, L, recurrent_dropout=0.5)
    x, state = torch.randn(T, B, I), _state(cell)
    masks = [torch.bernoulli(torch.full((H,), 0.5)) * 2 for _ in range(L)]
    out, final = stack(x, state, StackNoise(recurrent=masks, weight=[None] * L))
    ref_out, ref_h = _reference_with_masks(stack, x, state, [[m] * T for m in masks])
    assert_close(out, ref_out)
    final_h = final[0] if cell == "lstm" else final
    assert_close(final_h, ref_h)
    params = list(stack.parameters())
    for ours, theirs in zip(_grads(out, final_h, params), _grads(ref_out, ref_h, params)):
        assert_close(ours, theirs)
    assert not torch.allclose(out, stack.eval()(x, state)[0]), "the mask must change the result"


@pytest.mark.parametrize("cell", CELLS)
def test_per_sequence_masks_equal_the_shared_mask_when_all_sequences_share_it(cell):
    torch.manual_seed(2)
    stack = RecurrentStack(cell, I, H, L, recurrent_dropout=0.5, recurrent_dropout_kind="variational_per_sequence")
    x, state = torch.randn(T, B, I), _state(cell)
    masks = [torch.bernoulli(torch.full((H,), 0.5)) * 2 for _ in range(L)]
    shared = stack(x, state, StackNoise(masks, [None] * L))
    per_sequence = stack(x, state, StackNoise([m.expand(B, H) for m in masks], [None] * L))
    assert_close(per_sequence[0], shared[0])
    params = list(stack.parameters())
    h = lambda out: out[1][0] if cell == "lstm" else out[1]  # noqa: E731
    for a, b in zip(_grads(per_sequence[0], h(per_sequence), params), _grads(shared[0], h(shared), params)):
        assert_close(a, b)


@pytest.mark.parametrize("kind, shape", [("variational", (H,)), ("variational_per_sequence", (B, H)),
                                         ("naive", (T, B, H))])
def test_each_recurrent_dropout_kind_draws_its_masks_and_the_training_pass_applies_them(kind, shape):
    torch.manual_seed(3)
    stack = RecurrentStack("lstm", I, H, L, recurrent_dropout=0.4, recurrent_dropout_kind=kind)
    noise = stack.sample_noise(T, B, torch.zeros(()))
    assert all(m.shape == shape for m in noise.recurrent) and noise.weight == [None] * L
    x, state = torch.randn(T, B, I), _state("lstm")
    ref_out, _ = _reference_with_masks(stack, x, state,
                                       [[m if m.dim() < 3 else m[t] for t in range(T)] for m in noise.recurrent])
    assert_close(stack(x, state, noise)[0], ref_out)
    if kind == "naive":
        assert not torch.equal(noise.recurrent[0][0], noise.recurrent[0][1]), "naive: a fresh mask every step"
    torch.manual_seed(4)
    drawn = stack(x, state)[0]
    torch.manual_seed(4)
    assert_close(drawn, stack(x, state, stack.sample_noise(T, B, x))[0])  # training draws exactly such masks
    stack.eval()  # evaluation draws no mask: deterministic, and the unmasked reference
    assert torch.equal(stack(x, state)[0], stack(x, state)[0])
    assert_close(stack(x, state)[0], _reference_with_masks(stack, x, state, [[None] * T] * L)[0])


def test_weight_drop_trains_the_raw_weights_and_never_masks_w_ih():
    torch.manual_seed(5)
    stack = RecurrentStack("lstm", I, H, L, weight_drop=0.5)
    x = torch.randn(T, B, I)
    noise = stack.sample_noise(T, B, x)
    assert noise.recurrent == [None] * L and noise.weight[0].shape == (4 * H, H)
    out, _ = stack(x, None, noise)
    # The same pass by hand: torch.nn layers with W_hh * mask, W_ih as it is.
    plain = nn.LSTM(I, H, L)
    plain.load_state_dict(stack.multilayer_state_dict())
    with torch.no_grad():
        for k in range(L):
            getattr(plain, f"weight_hh_l{k}").mul_(noise.weight[k])
    assert_close(out, plain(x)[0])
    raw = stack.layer_weights(1).weight_hh
    before = raw.detach().clone()
    optimizer = torch.optim.SGD(stack.parameters(), lr=0.5)
    stack(x)[0].pow(2).sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(raw, before) and isinstance(raw, nn.Parameter)
    assert sorted(stack.multilayer_state_dict()) == sorted(nn.LSTM(I, H, L).state_dict())  # names kept
    nn.LSTM(I, H, L).load_state_dict(stack.multilayer_state_dict())


def test_embedding_dropout_drops_whole_word_types():
    reg = RegularizationConfig(embedding_dropout=0.5)
    model = RNNLanguageModel(11, embedding_dim=4, hidden_size=4, num_layers=1, regularization=reg)
    tokens = torch.arange(11).repeat(3, 2)  # every type occurs 6 times: (3, 22)
    torch.manual_seed(0)
    inputs = model.rnn_inputs(tokens)
    zero_rows = (inputs == 0).all(-1)
    for word in range(11):
        dropped = zero_rows[tokens == word]
        assert dropped.all() or not dropped.any(), "a type is dropped at all its occurrences or none"
    assert zero_rows.any() and not zero_rows.all()
    kept = ~zero_rows
    assert_close(inputs[kept], 2 * model.embedding(tokens)[kept])
    model.eval()
    assert_close(model.rnn_inputs(tokens), model.embedding(tokens))


def test_activation_penalties_are_merity_2017s():
    hidden, dropped = torch.randn(T, B, H), torch.randn(T, B, H)
    expected = 2.0 * dropped.pow(2).mean() + 1.0 * (hidden[1:] - hidden[:-1]).pow(2).mean()
    assert_close(activation_penalty(hidden, dropped, 2.0, 1.0), expected)
    assert activation_penalty(hidden, dropped, 0.0, 0.0).item() == 0.0
    reg = RegularizationConfig(ar=2.0, tar=1.0)
    model = RNNLanguageModel(11, embedding_dim=4, hidden_size=4, num_layers=2, regularization=reg)
    tokens = torch.randint(11, (T, B))
    out = model(tokens, tokens)
    hidden, _ = model.rnn(model.embedding(tokens))
    assert_close(out.penalty, activation_penalty(hidden, hidden, 2.0, 1.0))
    assert model.eval()(tokens, tokens).penalty.item() == 0.0  # training-only terms


def test_with_every_regularizer_off_the_model_is_bitwise_the_plain_torch_composition():
    torch.manual_seed(6)
    model = RNNLanguageModel(11, cell="lstm", embedding_dim=5, hidden_size=6, num_layers=3)
    lstm = nn.LSTM(5, 6, 3)
    lstm.load_state_dict(model.rnn.multilayer_state_dict())
    tokens, targets = torch.randint(11, (T, B)), torch.randint(11, (T, B))
    out = model(tokens, targets)
    hidden, _ = lstm(model.embedding(tokens))
    loss = nn.functional.cross_entropy(model.output.logits(hidden.reshape(-1, 6)), targets.reshape(-1),
                                       reduction="sum")
    assert torch.equal(out.loss, loss) and out.penalty.item() == 0.0
    ours = torch.autograd.grad(out.loss, [p for k in range(3) for p in model.rnn.layer_weights(k)])
    theirs = torch.autograd.grad(loss, list(lstm.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


EVERY_REGULARIZER = [
    "train.lr=60", "train.loss_average=tokens", "train.schedule=none", "train.averaging=nonmono",
    "train.variable_bptt=true", "train.weight_decay=1e-4",
    "regularization.input_dropout=0.2", "regularization.hidden_dropout=0.2", "regularization.output_dropout=0.3",
    "regularization.dropout_kind=variational", "regularization.recurrent_dropout=0.25",
    "regularization.weight_drop=0.3", "regularization.embedding_dropout=0.1", "regularization.ar=1.0",
    "regularization.tar=0.5"]
# ptb-awd as it is (3 layers, the last as wide as the tied embedding), only smaller
AWD_SHRUNK = ["model.hidden_size=12", "model.last_layer_size=8", "train.bptt=10"]


@pytest.mark.parametrize("preset, settings", [(None, EVERY_REGULARIZER), ("ptb-awd", AWD_SHRUNK)],
                         ids=["every-regularizer", "ptb-awd"])
def test_a_run_with_every_regularizer_nt_asgd_and_variable_bptt_resumes_exactly(tiny_corpus_dir, tmp_path,
                                                                                  preset, settings):
    config = load_config(preset, overrides=[f"data.path={tiny_corpus_dir}", *TINY_MODEL, "train.epochs=5",
                                            "train.log_every=2", "train.nonmono=1", *settings])
    whole = Trainer(config, tmp_path / "whole").fit()
    started = torch.load(tmp_path / "whole" / "latest.pt", weights_only=True)["progress"]["averaging_from"]
    assert started > 0, "the test must exercise NT-ASGD"
    Trainer(config.with_overrides({"train.max_steps": started + 7}), tmp_path / "split").fit()
    stopped = torch.load(tmp_path / "split" / "latest.pt", weights_only=True)
    assert stopped["averaged"] is not None and stopped["progress"]["window"] > 0  # mid-epoch, averaging
    resumed = Trainer(config, tmp_path / "split", resume=True).fit()

    def records(run, event):
        return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if r["event"] == event]

    assert records(tmp_path / "split", "train") == records(tmp_path / "whole", "train")
    # the split run also validated where it stopped; every validation of the whole run is in it
    assert set(records(tmp_path / "whole", "eval")) <= set(records(tmp_path / "split", "eval"))
    a = torch.load(tmp_path / "whole" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "latest.pt", weights_only=True)
    for part in ("model", "averaged"):
        assert a[part].keys() == b[part].keys() and all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert a["progress"] == b["progress"] and resumed.steps == whole.steps


def test_monte_carlo_dropout_evaluation_is_the_mixture_of_sampled_distributions():
    from rnnlab.data.batching import eval_stream
    from rnnlab.training.loop import evaluate, evaluate_mc_dropout

    torch.manual_seed(7)
    ids = torch.randint(11, (53,))
    stream = eval_stream(ids, 3, eos_id=0)
    plain = RNNLanguageModel(11, embedding_dim=4, hidden_size=4, num_layers=2)
    exact = evaluate(plain, stream, bptt=5)
    assert evaluate_mc_dropout(plain, stream, 5, samples=3).loss == pytest.approx(exact.loss, rel=1e-6)

    reg = RegularizationConfig(input_dropout=0.3, output_dropout=0.3, dropout_kind="variational",
                               recurrent_dropout=0.3)
    model = RNNLanguageModel(11, embedding_dim=4, hidden_size=4, num_layers=2, regularization=reg)
    model.load_state_dict(plain.state_dict())
    # One sample, by hand: a training-mode pass with the state carried, the same seed.
    torch.manual_seed(8)
    mc = evaluate_mc_dropout(model, stream, 5, samples=1)
    torch.manual_seed(8)
    total, state = 0.0, None
    with torch.no_grad():
        for begin in range(0, stream.inputs.size(0), 5):
            features, state = model.features(stream.inputs[begin : begin + 5], state)
            targets = stream.targets[begin : begin + 5].reshape(-1)
            total += float(model.output.exact_loss(features.reshape(-1, 4), targets).loss)
    assert mc.loss == pytest.approx(total / stream.tokens, rel=1e-6)
    # Two samples, by hand: the mean of the two probabilities of each target, not of their logs.
    torch.manual_seed(9)
    model.eval()
    two = evaluate_mc_dropout(model, stream, 5, samples=2)
    assert not model.training  # the mode the model was in comes back
    torch.manual_seed(9)
    model.train()
    nll, states = 0.0, [None, None]
    with torch.no_grad():
        for begin in range(0, stream.inputs.size(0), 5):
            targets = stream.targets[begin : begin + 5].reshape(-1)
            scored = targets != -100
            probs = []
            for s in range(2):
                features, states[s] = model.features(stream.inputs[begin : begin + 5], states[s])
                log_probs = model.output.log_probs(features.reshape(-1, 4))[scored]
                probs.append(log_probs.gather(1, targets[scored].unsqueeze(1)).exp().double())
            nll -= float(((probs[0] + probs[1]) / 2).log().sum())
    assert two.loss == pytest.approx(nll / stream.tokens, rel=1e-6)
    assert two.tokens == exact.tokens and two.loss != mc.loss
