import json
from importlib import resources

import jsonschema
import pytest
import torch
from torch.testing import assert_close

from rnnlab.config import ModelConfig
from rnnlab.diagnostics import diagnose, gradient_flow, jacobian_norms, matrix_spectrum, run_probe, summary_records
from rnnlab.models import RNNLanguageModel

SCHEMA = json.loads(resources.files("rnnlab.diagnostics").joinpath("schema.json").read_text())


def _linear_regime_rnn(c: float, hidden: int = 16, vocab: int = 7) -> RNNLanguageModel:
    """A tanh RNN with W_hh = c * Q (Q orthogonal), zero biases and tiny inputs: tanh' ~ 1 everywhere."""
    model = RNNLanguageModel(vocab, cell="rnn_tanh", embedding_dim=hidden, hidden_size=hidden, num_layers=1)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(hidden, hidden, dtype=torch.float64))
        weights = model.rnn.layer_weights(0)
        weights.weight_hh.copy_(c * q)
        weights.bias_ih.zero_()
        weights.bias_hh.zero_()
        model.embedding.weight.mul_(1e-8)
    return model


@pytest.mark.parametrize("c", [0.5, 1.2])
def test_linear_regime_gradient_flow_is_c_to_the_distance(c):
    n = 50
    model = _linear_regime_rnn(c)
    tokens, targets = torch.randint(7, (n, 3)), torch.randint(7, (n, 3))
    flow = gradient_flow(run_probe(model, tokens, targets))[0]
    measured = torch.tensor(flow["last_step"], dtype=torch.float64)
    expected = measured[0] * c ** torch.arange(n, dtype=torch.float64)
    assert_close(measured, expected, rtol=0.05, atol=0.0)
    assert flow["gain_per_step"] == pytest.approx(c, rel=0.01)


def test_spectrum_matches_torch_linalg_and_flags_non_normal_matrices():
    w = torch.randn(12, 12)
    spectrum = matrix_spectrum(w, eigenvalues=True)
    assert spectrum["sigma_max"] == pytest.approx(float(torch.linalg.matrix_norm(w.double(), 2)), rel=1e-9)
    assert spectrum["spectral_radius"] == pytest.approx(float(torch.linalg.eigvals(w.double()).abs().max()), rel=1e-9)
    assert len(spectrum["eigenvalues"]["real"]) == 12

    symmetric = w + w.t()
    assert matrix_spectrum(symmetric)["non_normal"] is False
    shear = torch.tensor([[0.9, 2.0], [0.0, 0.9]])  # eigenvalues 0.9, but ||W||_2 ~ 2.4
    flagged = matrix_spectrum(shear)
    assert flagged["non_normal"] is True and flagged["spectral_radius"] == pytest.approx(0.9)
    assert matrix_spectrum(torch.randn(8, 4))["spectral_radius"] is None  # not square: no eigenvalues


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_exact_jacobian_norm_never_exceeds_the_bound(cell, scale):
    model = RNNLanguageModel.from_config(
        ModelConfig(cell=cell, num_layers=2, hidden_size=10, embedding_dim=6, recurrent_scale=scale), 9)
    tokens, targets = torch.randint(9, (15, 4)), torch.randint(9, (15, 4))
    for layer in jacobian_norms(run_probe(model, tokens, targets), max_sequences=4):
        assert layer["max_norm_over_bound"] <= 1 + 1e-9
        assert all(0 <= n <= b * (1 + 1e-9) for n, b in zip(layer["norm"], layer["bound"]))


def test_vanilla_jacobian_is_diag_fprime_times_w_hh():
    model = RNNLanguageModel.from_config(ModelConfig(cell="rnn_tanh", num_layers=1, hidden_size=8, embedding_dim=5), 9)
    tokens, targets = torch.randint(9, (6, 1)), torch.randint(9, (6, 1))
    probe = run_probe(model, tokens, targets)
    measured = jacobian_norms(probe, max_sequences=1)[0]["norm"]
    w_hh = model.rnn.layer_weights(0).weight_hh.detach().double()
    for t, norm in enumerate(measured):
        z = probe.trace.steps[0][t]["z"].detach()[0].double()
        exact = torch.linalg.matrix_norm((1 - torch.tanh(z) ** 2)[:, None] * w_hh, 2)
        assert norm == pytest.approx(float(exact), rel=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_jacobians_match_torch_autograd(cell):
    """The LSTM Jacobian is over the pair (h, c); both are checked against torch.autograd.functional."""
    model = RNNLanguageModel.from_config(ModelConfig(cell=cell, num_layers=2, hidden_size=6, embedding_dim=4), 9)
    probe = run_probe(model, torch.randint(9, (5, 2)), torch.randint(9, (5, 2)))
    layers = jacobian_norms(probe, max_sequences=1)
    for layer, entry in enumerate(layers):
        assert entry["state"] == ("(h, c)" if cell == "lstm" else "h") and entry["bound"] is None
        rnn_layer = torch.nn.LSTM(6 if layer else 4, 6) if cell == "lstm" else torch.nn.GRU(6 if layer else 4, 6)
        rnn_layer.load_state_dict(dict(zip(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"],
                                           model.rnn.layer_weights(layer))))
        for t in range(1, 5):
            x = probe.trace.inputs[layer][t].detach()[:1].unsqueeze(0)  # (1, 1, I)
            h = probe.trace.hidden[layer][t - 1].detach()[:1]
            if cell == "lstm":
                c = probe.trace.cell[layer][t - 1].detach()[:1]

                def step(hc, x=x, rnn_layer=rnn_layer):
                    _, (h2, c2) = rnn_layer(x, (hc[:6].view(1, 1, 6), hc[6:].view(1, 1, 6)))
                    return torch.cat([h2.view(6), c2.view(6)])

                jac = torch.autograd.functional.jacobian(step, torch.cat([h.view(6), c.view(6)]))
            else:
                jac = torch.autograd.functional.jacobian(
                    lambda h0, x=x, rnn_layer=rnn_layer: rnn_layer(x, h0.view(1, 1, 6))[1].view(6), h.view(6))
            assert entry["norm"][t] == pytest.approx(float(torch.linalg.matrix_norm(jac.double(), 2)), rel=1e-4)


def test_gradient_flow_norms_do_not_depend_on_the_batch_size():
    model = RNNLanguageModel.from_config(ModelConfig(cell="lstm", num_layers=1, hidden_size=6, embedding_dim=4), 9)
    tokens, targets = torch.randint(9, (8, 1)), torch.randint(9, (8, 1))
    one = gradient_flow(run_probe(model, tokens, targets))[0]["last_step"]
    three = gradient_flow(run_probe(model, tokens.repeat(1, 3), targets.repeat(1, 3)))[0]["last_step"]
    assert three == pytest.approx(one, rel=1e-5)


def test_a_gradient_that_underflows_is_vanishing_not_a_crash():
    n = 250  # 0.5 ** 249 is far below float32's smallest number
    diagnosis = diagnose(_linear_regime_rnn(0.5), torch.randint(7, (n, 2)), torch.randint(7, (n, 2)),
                         jacobian_sequences=1)
    verdict = diagnosis["layers"][0]["verdict"]
    assert verdict["verdict"] == "vanishing" and "falls to 0" in verdict["reason"]
    jsonschema.validate(json.loads(json.dumps(diagnosis)), SCHEMA)


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_diagnosis_validates_against_the_schema(cell):
    model = RNNLanguageModel.from_config(ModelConfig(cell=cell, num_layers=2, hidden_size=6, embedding_dim=4), 9)
    diagnosis = diagnose(model, torch.randint(9, (7, 3)), torch.randint(9, (7, 3)))
    jsonschema.validate(json.loads(json.dumps(diagnosis)), SCHEMA)
    assert [layer["layer"] for layer in diagnosis["layers"]] == [0, 1]
    if cell == "lstm":
        gates = diagnosis["layers"][0]["saturation"]["gates"]
        assert set(gates) == {"i", "f", "o"} and 0 < gates["f"]["mean"] < 1
        assert set(diagnosis["layers"][0]["spectrum"]["gates"]) == {"i", "f", "g", "o"}


def test_a_stack_of_layers_of_different_sizes_is_diagnosed_layer_by_layer():
    config = ModelConfig(num_layers=3, hidden_size=6, last_layer_size=4, embedding_dim=4, tie_weights=True)
    model = RNNLanguageModel.from_config(config, 9)
    diagnosis = diagnose(model, torch.randint(9, (7, 3)), torch.randint(9, (7, 3)))
    jsonschema.validate(json.loads(json.dumps(diagnosis)), SCHEMA)
    assert diagnosis["layer_sizes"] == [6, 6, 4] and diagnosis["hidden_size"] == 4
    assert [layer["spectrum"]["whole"]["shape"] for layer in diagnosis["layers"]] == [[24, 6], [24, 6], [16, 4]]


def test_tanh_saturation_counts_large_preactivations():
    model = _linear_regime_rnn(1.0)
    with torch.no_grad():
        model.rnn.layer_weights(0).bias_ih.fill_(10.0)  # z = 10 + (|W_hh h| <= 1) + tiny input: every |z| > 5
    diagnosis = diagnose(model, torch.randint(7, (5, 2)), torch.randint(7, (5, 2)))
    sat = diagnosis["layers"][0]["saturation"]
    assert sat["saturated_fraction"] > 0.9
    assert sat["nonlinearities"]["z"]["derivative_histogram"]["fraction"][0] > 0.9  # f'(z) in the lowest bin


def test_measuring_does_not_touch_gradients_or_mode():
    model = RNNLanguageModel.from_config(ModelConfig(cell="gru", num_layers=1, hidden_size=6, embedding_dim=4), 9)
    model.train()
    summary_records(model, torch.randint(9, (5, 2)), torch.randint(9, (5, 2)))
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_verdicts_tell_vanishing_from_exploding():
    vanishing = diagnose(_linear_regime_rnn(0.5), torch.randint(7, (30, 2)), torch.randint(7, (30, 2)))
    exploding = diagnose(_linear_regime_rnn(1.5), torch.randint(7, (30, 2)), torch.randint(7, (30, 2)))
    assert vanishing["layers"][0]["verdict"]["verdict"] == "vanishing"
    assert exploding["layers"][0]["verdict"]["verdict"] == "exploding"


@pytest.mark.parametrize("skip", ["none", "residual", "dense"])
def test_depth_norm_is_the_gradient_reaching_each_layer_by_torchs_own_cells(skip):
    """Against a hand-written stack of torch.nn.GRUCell on the same weights: h_t of every layer kept,
    the loss summed over steps, the gradient at each h_t (what BPTT carries there) combined over steps."""
    torch.manual_seed(3)
    dilations = (1, 2, 1)
    config = ModelConfig(cell="gru", num_layers=3, hidden_size=6, embedding_dim=4, skip=skip, dilations=dilations)
    model = RNNLanguageModel.from_config(config, 9).eval()
    inputs, targets = torch.randint(9, (6, 5)), torch.randint(9, (6, 5))
    flow = gradient_flow(run_probe(model, inputs, targets))

    rnn, steps, batch = model.rnn, inputs.size(0), inputs.size(1)
    x = model.rnn_inputs(inputs).detach()
    hidden, below = [], x  # hidden[l][t]: layer l's h_t
    for k, d in enumerate(dilations):
        cell = torch.nn.GRUCell(rnn.layers[k].input_size, 6)
        cell.load_state_dict({name.replace("_l0", ""): w for name, w in rnn.layers[k].state_dict().items()})
        layer_in = below if k == 0 or skip != "dense" else torch.cat([x, below], -1)
        hs = []
        for t in range(steps):
            hs.append(cell(layer_in[t], hs[t - d] if t >= d else torch.zeros(batch, 6)))
        hidden.append(hs)
        out = torch.stack(hs)
        below = out + rnn.shortcuts[k](below) if skip == "residual" else out
    features = rnn.readout(torch.cat([torch.stack(hs) for hs in hidden], -1)) if skip == "dense" else below
    grads = torch.autograd.grad(model.step_costs(features, targets).sum(), [h for hs in hidden for h in hs])
    for k, entry in enumerate(flow):
        per_step = [float(g.double().pow(2).sum(-1).mean().sqrt()) * batch for g in grads[k * steps : (k + 1) * steps]]
        assert entry["depth_norm"] == pytest.approx(sum(v * v for v in per_step) ** 0.5, rel=1e-5)


def test_residual_connections_keep_the_gradient_up_at_the_bottom_of_a_deep_stack():
    depth = {}
    for skip in ("none", "residual"):
        torch.manual_seed(0)
        config = ModelConfig(cell="rnn_tanh", num_layers=8, hidden_size=16, embedding_dim=16, skip=skip,
                             init="default")
        model = RNNLanguageModel.from_config(config, 9)
        flow = gradient_flow(run_probe(model, torch.randint(9, (10, 4)), torch.randint(9, (10, 4))))
        depth[skip] = [entry["depth_norm"] for entry in flow]
    assert depth["none"][0] < 0.1 * depth["none"][-1]  # a plain stack loses it on the way down
    assert depth["residual"][0] > 0.5 * depth["residual"][-1]


def test_a_dilated_layer_is_judged_on_the_distances_its_recurrence_reaches():
    """h_t of a layer with dilation d reaches h_(t-k) through its own recurrence only when d divides k
    (elsewhere the gradient can be exactly 0): the ratio and the fit use those distances only."""
    torch.manual_seed(0)
    config = ModelConfig(cell="lstm", num_layers=2, hidden_size=8, embedding_dim=4, dilations=(1, 3),
                         forget_bias=3.0)
    model = RNNLanguageModel.from_config(config, 9)
    flow = gradient_flow(run_probe(model, torch.randint(9, (11, 4)), torch.randint(9, (11, 4))))
    top = flow[1]
    assert top["span"] == 9 and flow[0]["span"] == 10
    assert 0.0 in top["last_step"]  # unreachable distances exist ...
    assert top["ratio"] == pytest.approx(top["last_step"][9] / top["last_step"][0]) and top["ratio"] > 0
    diagnosis = diagnose(model, torch.randint(9, (11, 4)), torch.randint(9, (11, 4)))
    assert "falls to 0" not in diagnosis["layers"][1]["verdict"]["reason"]  # ... and do not make it "vanishing"
    assert "over 9 steps" in diagnosis["layers"][1]["verdict"]["reason"]


def _probe_for(cell, hidden=12, layers=2, dilations=(), seed=0, steps=7, batch=3, scale=None):
    torch.manual_seed(seed)
    config = ModelConfig(cell=cell, num_layers=layers, hidden_size=hidden, embedding_dim=5, dilations=dilations,
                         recurrent_scale=scale)
    model = RNNLanguageModel.from_config(config, 9)
    return model, run_probe(model, torch.randint(9, (steps, batch)), torch.randint(9, (steps, batch)))


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_structured_jacobian_products_equal_autograds(cell):
    """The written-out products J v and J^T u equal the Jacobian autograd builds through the reference step."""
    from rnnlab.diagnostics.measures import step_jacobian_operator
    from rnnlab.nn.cells import step_function

    _, probe = _probe_for(cell, dilations=(1, 2))
    for layer in range(2):
        w = [None if p is None else p.detach() for p in probe.rnn.layer_weights(layer)]
        steps, hidden = len(probe.trace.steps[layer]), w[1].size(1)
        records = {k: torch.cat([probe.trace.steps[layer][t][k].detach() for t in range(steps)])
                   for k in probe.trace.steps[layer][0]}
        prev_h = torch.cat([h.detach() for h, _ in probe.trace.previous[layer]])
        prev_c = torch.cat([c.detach() for _, c in probe.trace.previous[layer]]) if cell == "lstm" else None
        xs = torch.cat([x.detach() for x in probe.trace.inputs[layer]])
        matvec, rmatvec = step_jacobian_operator(cell, w[1], w[3], records, prev_h, prev_c)(slice(None))
        step = step_function(cell)

        def advance(state, x, step=step, w=w, hidden=hidden):
            if cell == "lstm":
                h, c, _ = step(x, state[:hidden], state[hidden:], *w)
                return torch.cat([h, c])
            return step(x, state, None, *w)[0]

        states = torch.cat([prev_h, prev_c], -1) if cell == "lstm" else prev_h
        jacobians = torch.func.vmap(torch.func.jacrev(advance))(states, xs)  # (N, D, D)
        v, u = torch.randn_like(states), torch.randn_like(states)
        assert_close(matvec(v), torch.einsum("nij,nj->ni", jacobians, v), rtol=1e-5, atol=1e-6)
        assert_close(rmatvec(u), torch.einsum("nij,ni->nj", jacobians, u), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("cell", "dilations"), [("rnn_tanh", ()), ("rnn_relu", ()), ("lstm", ()), ("gru", ()),
                                                 ("lstm", (1, 3))])
def test_lanczos_jacobian_norms_equal_the_dense_path(cell, dilations):
    """The iterative path (never forming a Jacobian) agrees with the full SVD of each formed Jacobian to 1e-4."""
    _, probe = _probe_for(cell, hidden=24, dilations=dilations, steps=9, batch=4, scale=1.3)
    dense = jacobian_norms(probe, max_sequences=3, method="dense")
    lanczos = jacobian_norms(probe, max_sequences=3, method="lanczos")
    for a, b in zip(dense, lanczos):
        assert a["method"] == "dense" and b["method"] == "lanczos" and b["iterations"] > 1
        assert_close(torch.tensor(b["norm_max"]), torch.tensor(a["norm_max"]), rtol=1e-4, atol=1e-9)
        assert_close(torch.tensor(b["norm"]), torch.tensor(a["norm"]), rtol=1e-4, atol=1e-9)


def test_large_matrices_get_sigma_max_by_lanczos_and_skip_eigenvalues(monkeypatch):
    import rnnlab.diagnostics.measures as measures

    w = torch.randn(700, 640) / 25  # above DENSE_LIMIT: Lanczos
    assert measures.DENSE_LIMIT < 700
    exact = float(torch.linalg.matrix_norm(w.double(), 2))
    assert matrix_spectrum(w)["sigma_max"] == pytest.approx(exact, rel=1e-6)
    monkeypatch.setattr(measures, "EIGEN_LIMIT", 50)
    square = torch.randn(60, 60)
    skipped = measures.matrix_spectrum(square, eigenvalues=True, eigen_limit=measures.EIGEN_LIMIT)
    assert skipped["spectral_radius"] is None and skipped["eigen_skipped"] and "eigenvalues" not in skipped
    forced = measures.matrix_spectrum(square, eigenvalues=True, eigen_limit=None)
    assert forced["spectral_radius"] == pytest.approx(float(torch.linalg.eigvals(square.double()).abs().max()))


def test_sigma_max_means_the_whole_w_hh_in_the_verdict_the_report_and_the_training_records():
    """One name, one number: the stacked W_hh's largest singular value; the gate blocks' is gate_sigma_max."""
    model, probe = _probe_for("lstm", hidden=10, steps=6, batch=2)
    with torch.no_grad():
        model.rnn.layer_weights(0).weight_hh[10:20].mul_(3)  # make one gate block stand out
    tokens, targets = torch.randint(9, (6, 2)), torch.randint(9, (6, 2))
    diagnosis = diagnose(model, tokens, targets)
    records = summary_records(model, tokens, targets)
    for entry, record in zip(diagnosis["layers"], records):
        w_hh = model.rnn.layer_weights(entry["layer"]).weight_hh.detach()
        whole = float(torch.linalg.matrix_norm(w_hh.double(), 2))
        assert entry["spectrum"]["whole"]["sigma_max"] == pytest.approx(whole, rel=1e-6)
        whole_sigma = entry["spectrum"]["whole"]["sigma_max"]
        assert entry["verdict"]["numbers"]["sigma_max"] == record["sigma_max"] == whole_sigma
        assert f"sigma_max(W_hh) = {record['sigma_max']:.3g}" in entry["verdict"]["reason"]
        blocks = [b["sigma_max"] for b in entry["spectrum"]["gates"].values()]
        assert record["gate_sigma_max"] == max(blocks) < record["sigma_max"]


def test_saturation_not_the_weights_is_named_when_it_limits_the_growth():
    """The issue's case: a tanh RNN with orthogonal W_hh scaled to sigma_max 1.5. The gradient grows only ~1.03x per
    step because units are partly saturated (mean tanh' ~0.6, a few % of |z| > 2, none > 5); the verdict says so,
    with the mean derivative. Scaled to 0.5 it vanishes, and the verdict blames the weights."""
    def verdict_for(scale):
        torch.manual_seed(0)
        config = ModelConfig(cell="rnn_tanh", num_layers=1, hidden_size=64, embedding_dim=16, init="default",
                             recurrent_init="orthogonal", recurrent_scale=scale)
        tokens = torch.randint(9, (60, 8))
        return diagnose(RNNLanguageModel.from_config(config, 9), tokens, tokens)["layers"][0]

    entry = verdict_for(1.5)
    sat, verdict = entry["saturation"], entry["verdict"]
    assert 0.3 < sat["mean_derivative"] < 0.8 and sat["partly_saturated_fraction"] > 0.01
    assert sat["saturated_fraction"] < sat["partly_saturated_fraction"]
    assert verdict["numbers"]["mean_derivative"] == sat["mean_derivative"]
    assert verdict["numbers"]["gain_per_step"] < 0.9 * 1.5
    assert f"mean f'(z) {sat['mean_derivative']:.2f}" in verdict["reason"]
    assert "saturation limits the growth" in verdict["reason"], verdict["reason"]
    weak = verdict_for(0.5)["verdict"]
    assert weak["verdict"] == "vanishing" and "the weights make it vanish" in weak["reason"]


def test_gate_saturation_uses_karpathys_thresholds():
    model, probe = _probe_for("lstm", hidden=8, layers=1)
    with torch.no_grad():
        model.rnn.layer_weights(0).bias_hh[8:16].fill_(-30.0)  # forget gate shut: f ~ 0 everywhere
    sat = diagnose(model, torch.randint(9, (7, 3)), torch.randint(9, (7, 3)))["layers"][0]["saturation"]
    assert sat["gate_thresholds"] == [0.1, 0.9]
    assert sat["gates"]["f"]["left_saturated"] == 1.0 and sat["gates"]["f"]["right_saturated"] == 0.0
