"""The measurements: gradient flow through time, step Jacobians, W_hh spectra, saturation, verdict.

Everything runs on a probe batch through the reference path (``rnnlab.nn.cells``) on the model's
own weights, in eval mode (no dropout), with ``torch.autograd.grad`` so no ``.grad`` is touched:
measuring during training changes nothing about training.

A model qualifies when it has ``rnn`` (a ``RecurrentStack``: its weights are read through
``layer_weights(k)``), ``rnn_inputs(inputs)`` and ``step_costs(features, targets) -> (T,)`` (the
batch-averaged cost at each step): every ``RecurrentModel`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rnnlab.nn.cells import (
    GATES,
    SIGMOID_GATES,
    SQUASHED,
    Trace,
    reference_forward,
    step_function,
)
from rnnlab.nn.mode import evaluating

TANH_SATURATION = 5.0  # |z| above this: tanh'(z) < 2e-4 (the document's threshold)
GATE_LOW, GATE_HIGH = 0.05, 0.95  # a sigmoid gate below/above these is saturated
NON_NORMAL_GAP = 0.05  # sigma_max and rho differing by more than 5% of sigma_max: a non-normal W_hh
VANISHING_RATIO, EXPLODING_RATIO = 1e-2, 1e2  # gradient ratio across the probe window
HISTOGRAM_BINS = 20
STATE_NAMES = {"lstm": "(h, c)", "gru": "h", "rnn_tanh": "h", "rnn_relu": "h"}


@dataclass
class Probe:
    cell: str
    rnn: nn.Module
    trace: Trace
    costs: torch.Tensor  # (T,) cost_t averaged over the batch

    @property
    def steps(self) -> int:
        return self.costs.numel()


def run_probe(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Probe:
    """One reference pass from a zero state, keeping every intermediate in the graph."""
    with evaluating(model), torch.enable_grad():
        x = model.rnn_inputs(inputs).detach()  # the chain through time starts at the recurrent stack
        trace = Trace()
        features, _ = reference_forward(model.rnn, x, None, trace)
        costs = model.step_costs(features, targets)
    return Probe(model.rnn.cell, model.rnn, trace, costs)


# ---------------------------------------------------------------- 1. gradient flow through time


def _rms_norms(grads: list[torch.Tensor | None], like: list[torch.Tensor]) -> list[float]:
    """Per step: the norm of each sequence's gradient of its own loss, root-mean-squared over the batch.

    The costs are batch means, so d cost / d h_t^b = (1/B) d loss_b / d h_t^b: multiplying by B gives
    numbers that do not depend on the batch size."""
    out = []
    for g, h in zip(grads, like):
        g = torch.zeros_like(h) if g is None else g
        out.append(float(g.double().pow(2).sum(-1).mean().sqrt()) * h.size(0))
    return out


def _fit(norms_by_distance: list[float], stride: int = 1) -> dict[str, Any]:
    """log-gain per step (least-squares slope of log-norm on distance) and the end-to-start ratio over
    ``span`` steps.

    Only distances that are multiples of ``stride`` count: in a layer with dilation d, h_t reaches
    h_(t-k) through its own recurrence only when d divides k (elsewhere the gradient may be exactly 0).
    A norm that underflowed to 0 or overflowed to inf is left out of the slope; the ratio keeps it
    (0: vanished, inf: exploded); the ratio is None when the gradient at distance 0 is zero or not finite."""
    span = stride * ((len(norms_by_distance) - 1) // stride)
    points = [(d, math.log(v)) for d, v in enumerate(norms_by_distance)
              if d % stride == 0 and v > 0 and math.isfinite(v)]
    first, last = norms_by_distance[0], norms_by_distance[span]
    ratio = last / first if first > 0 and math.isfinite(first) and not math.isnan(last) else None
    if len(points) < 2:
        return {"log_gain_per_step": None, "gain_per_step": None, "ratio": ratio, "span": span}
    mean_d = sum(d for d, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((d - mean_d) ** 2 for d, _ in points)
    slope = sum((d - mean_d) * (y - mean_y) for d, y in points) / var
    return {"log_gain_per_step": slope, "gain_per_step": math.exp(slope), "ratio": ratio, "span": span}


def gradient_flow(probe: Probe) -> list[dict[str, Any]]:
    """||d cost_n / d h_t|| (the document's quantity) and ||d (sum_k cost_k) / d h_t|| per layer,
    indexed by distance n - t (0 = the last step); for LSTM also the same for the cell state c_t.
    ``depth_norm`` is ||d (sum_k cost_k) / d h^l|| over all steps of layer l: the gradient that
    reaches that depth of the stack (skip connections keep it up at the bottom)."""
    hidden = [h for layer in probe.trace.hidden for h in layer]
    cells = [c for layer in probe.trace.cell for c in layer]
    targets = hidden + cells
    last = torch.autograd.grad(probe.costs[-1], targets, retain_graph=True, allow_unused=True)
    total = torch.autograd.grad(probe.costs.sum(), targets, retain_graph=True, allow_unused=True)
    n, layers = probe.steps, len(probe.trace.hidden)
    dilations = getattr(probe.rnn, "dilations", (1,) * layers)
    results = []
    for layer in range(layers):
        stride = dilations[layer]
        span = slice(layer * n, (layer + 1) * n)
        by_time_last = _rms_norms(list(last[span]), hidden[span])
        by_time_total = _rms_norms(list(total[span]), hidden[span])
        entry: dict[str, Any] = {
            "distance": list(range(n)),
            "last_step": by_time_last[::-1],
            "all_steps": by_time_total[::-1],
            **_fit(by_time_last[::-1], stride),
            "all_steps_summary": _fit(by_time_total[::-1], stride),
            # through depth: what reaches this layer's outputs from every cost, over the whole window
            "depth_norm": math.hypot(*by_time_total),
        }
        if cells:
            offset = len(hidden)
            cell_span = slice(offset + layer * n, offset + (layer + 1) * n)
            entry["cell_last_step"] = _rms_norms(list(last[cell_span]), cells[layer * n : (layer + 1) * n])[::-1]
            entry["cell_summary"] = _fit(entry["cell_last_step"], stride)
        results.append(entry)
    return results


# ---------------------------------------------------------------- 2. the Jacobian chain


def _activation_derivative(cell: str, z: torch.Tensor) -> torch.Tensor:
    if cell == "rnn_relu":
        return (z > 0).to(z.dtype)
    return 1 - torch.tanh(z).pow(2)


def jacobian_norms(probe: Probe, max_sequences: int = 4, chunk_elements: int = 2**25) -> list[dict[str, Any]]:
    """Exact ||d state_t / d state_{t-1}||_2 (largest singular value; state_{t-d} in a layer with dilation
    d) at every step, for the first ``max_sequences`` sequences, with the layer's input x_t held fixed.
    The state is h for vanilla cells and GRU, and the pair (h, c) for LSTM (a 2H x 2H Jacobian). For vanilla cells the
    document's bound max|f'(z_t)| * sigma_max(W_hh) is given next to it (it does not apply to gates)."""
    step = step_function(probe.cell)
    lstm = probe.cell == "lstm"
    results = []
    for layer in range(len(probe.trace.hidden)):
        weights = [None if w is None else w.detach() for w in probe.rnn.layer_weights(layer)]
        hidden_size = weights[1].size(1)
        s = min(max_sequences, probe.trace.hidden[layer][0].size(0))
        prev_h = [h for h, _ in probe.trace.previous[layer]]  # what step t read: t - 1, or t - d when dilated
        xs = torch.stack([x.detach()[:s] for x in probe.trace.inputs[layer]])  # (T, S, I)
        if lstm:
            prev_c = [c for _, c in probe.trace.previous[layer]]
            states = torch.stack([torch.cat([h.detach()[:s], c.detach()[:s]], -1) for h, c in zip(prev_h, prev_c)])
        else:
            states = torch.stack([h.detach()[:s] for h in prev_h])  # (T, S, D)
        steps, dim = states.size(0), states.size(-1)

        def advance(state: torch.Tensor, x: torch.Tensor, weights=weights, split=hidden_size) -> torch.Tensor:
            if lstm:
                h, c, _ = step(x, state[:split], state[split:], *weights)
                return torch.cat([h, c])
            return step(x, state, None, *weights)[0]

        jac = torch.func.vmap(torch.func.jacrev(advance))
        flat_states, flat_x = states.reshape(steps * s, dim), xs.reshape(steps * s, -1)
        per_chunk = max(1, chunk_elements // (dim * dim))
        norms = torch.cat([
            torch.linalg.matrix_norm(jac(flat_states[i : i + per_chunk], flat_x[i : i + per_chunk]).double(), ord=2)
            for i in range(0, steps * s, per_chunk)
        ]).view(steps, s)
        entry: dict[str, Any] = {"state": STATE_NAMES[probe.cell], "sequences": s,
                                 "norm": norms.mean(1).tolist(), "norm_max": norms.max(1).values.tolist()}
        if probe.cell in ("rnn_tanh", "rnn_relu"):
            sigma = float(torch.linalg.matrix_norm(weights[1].double(), ord=2))
            z = torch.stack([probe.trace.steps[layer][t]["z"].detach()[:s] for t in range(steps)])  # (T, S, H)
            bound = _activation_derivative(probe.cell, z).abs().amax(-1).double() * sigma  # (T, S)
            entry["bound"] = bound.mean(1).tolist()
            entry["max_norm_over_bound"] = float((norms / bound.clamp_min(1e-300)).max())
        else:
            entry["bound"] = None
        results.append(entry)
    return results


# ---------------------------------------------------------------- 3. W_hh spectra


def matrix_spectrum(matrix: torch.Tensor, eigenvalues: bool = False) -> dict[str, Any]:
    """sigma_max (= ||W||_2), the spectral radius rho = max |eigenvalue| (square matrices only), and
    whether they differ by more than 5%: equal for normal matrices, sigma_max > rho otherwise."""
    w = matrix.detach().double()
    sigma = float(torch.linalg.matrix_norm(w, ord=2))
    out: dict[str, Any] = {"shape": list(w.shape), "sigma_max": sigma, "spectral_radius": None, "non_normal": None}
    if w.size(0) == w.size(1):
        eig = torch.linalg.eigvals(w)
        rho = float(eig.abs().max())
        out["spectral_radius"] = rho
        out["non_normal"] = bool(sigma > 0 and (sigma - rho) / sigma > NON_NORMAL_GAP)
        if eigenvalues:
            out["eigenvalues"] = {"real": eig.real.tolist(), "imag": eig.imag.tolist()}
    return out


def recurrent_spectra(rnn: nn.Module, eigenvalues: bool = False) -> list[dict[str, Any]]:
    """Per layer: the whole W_hh and, for LSTM / GRU, each gate's (H, H) block."""
    cell = rnn.cell
    results = []
    for layer in range(rnn.num_layers):
        w_hh = rnn.layer_weights(layer).weight_hh
        gates = {}
        if cell in ("lstm", "gru"):
            for name, block in zip(GATES[cell], w_hh.chunk(len(GATES[cell]), dim=0)):
                gates[name] = matrix_spectrum(block, eigenvalues)
        results.append({"whole": matrix_spectrum(w_hh, eigenvalues), "gates": gates})
    return results


# ---------------------------------------------------------------- 4. saturation


def _nonlinearity_inputs(cell: str, records: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The pre-activations that go through tanh (or relu), by name, stacked over time."""
    return {name: torch.stack([r[name].detach() for r in records]).double() for name in SQUASHED[cell]}


def _histogram(values: torch.Tensor) -> dict[str, list[float]]:
    counts = torch.histc(values.float(), bins=HISTOGRAM_BINS, min=0.0, max=1.0)
    edges = torch.linspace(0, 1, HISTOGRAM_BINS + 1)
    return {"edges": edges.tolist(), "fraction": (counts / max(values.numel(), 1)).tolist()}


def saturation(probe: Probe) -> list[dict[str, Any]]:
    """Per layer: the fraction of tanh inputs with |z| > 5 and a histogram of f'(z) (for relu: the
    fraction with f'(z) = 0); for gates, the mean and the fraction below 0.05 / above 0.95."""
    results = []
    for records in probe.trace.steps:
        inputs = _nonlinearity_inputs(probe.cell, records)
        nonlinearities = {}
        for name, z in inputs.items():
            derivative = _activation_derivative(probe.cell, z)
            entry = {"derivative_histogram": _histogram(derivative), "mean_derivative": float(derivative.mean())}
            if probe.cell == "rnn_relu":
                entry["zero_derivative_fraction"] = float((z <= 0).double().mean())
            else:
                entry["saturated_fraction"] = float((z.abs() > TANH_SATURATION).double().mean())
            nonlinearities[name] = entry
        gates = {}
        for name in SIGMOID_GATES[probe.cell]:
            g = torch.stack([r[name].detach() for r in records]).double()
            low, high = float((g < GATE_LOW).double().mean()), float((g > GATE_HIGH).double().mean())
            gates[name] = {"mean": float(g.mean()), "below_0.05": low, "above_0.95": high,
                           "saturated_fraction": low + high}
        all_z = torch.cat([z.flatten() for z in inputs.values()])
        saturated = (all_z <= 0) if probe.cell == "rnn_relu" else (all_z.abs() > TANH_SATURATION)
        threshold = None if probe.cell == "rnn_relu" else TANH_SATURATION  # relu: the zero-derivative side
        results.append({"threshold": threshold, "saturated_fraction": float(saturated.double().mean()),
                        "nonlinearities": nonlinearities, "gates": gates})
    return results


# ---------------------------------------------------------------- 5. verdict


def verdict(flow: dict[str, Any], spectrum: dict[str, Any], sat: dict[str, Any], steps: int) -> dict[str, Any]:
    """vanishing / exploding / healthy, from how ||d cost_n / d h_t|| changes across the probe window."""
    ratio, gain = flow["ratio"], flow["gain_per_step"]
    sigma = max([spectrum["whole"]["sigma_max"]] + [g["sigma_max"] for g in spectrum["gates"].values()])
    numbers = {"ratio": ratio, "gain_per_step": gain, "steps": steps, "sigma_max": sigma,
               "saturated_fraction": sat["saturated_fraction"]}
    if ratio is None:
        return {"verdict": "undetermined", "numbers": numbers,
                "reason": "the gradient of the last step's loss is zero or not finite at the last step"}
    over = flow.get("span", steps - 1)  # a dilated layer's recurrence reaches multiples of its dilation
    span = f"over {over} steps" + (f" (x{gain:.3g} per step)" if gain is not None else "")
    if ratio == 0:
        kind, reason = "vanishing", f"||dcost_n/dh_t|| falls to 0 (below float range) {span}"
    elif ratio < VANISHING_RATIO:
        kind, reason = "vanishing", f"||dcost_n/dh_t|| falls {1 / ratio:.3g}-fold {span}"
    elif ratio > EXPLODING_RATIO:
        kind, reason = "exploding", f"||dcost_n/dh_t|| grows {ratio:.3g}-fold {span}"
    else:
        kind, reason = "healthy", f"||dcost_n/dh_t|| changes {ratio:.3g}-fold {span}"
    what = "with zero derivative" if sat["threshold"] is None else "saturated"
    reason += f"; sigma_max(W_hh) = {sigma:.3g}, {100 * sat['saturated_fraction']:.1f}% of units {what}"
    return {"verdict": kind, "reason": reason, "numbers": numbers}
