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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rnnlab.diagnostics.linalg import MatVec, largest_singular_values, matrix_sigma_max
from rnnlab.nn.cells import (
    GATES,
    SIGMOID_GATES,
    SQUASHED,
    Trace,
    reference_forward,
    step_function,
)
from rnnlab.nn.mode import evaluating

# progress(stage, layer, done, total): where a long diagnosis stands (the CLI draws a bar from it)
Progress = Callable[[str, int, int, int], None]

# Saturation thresholds. Gates: Karpathy, Johnson & Fei-Fei (2015, "Visualizing and understanding recurrent
# networks") call a gate left- / right-saturated when its activation is below 0.1 / above 0.9. tanh units: |z| > 2
# (tanh'(z) < 0.071: the unit passes less than a fourteenth of the gradient) is "partly saturated", |z| > 5
# (tanh'(z) < 2e-4: practically none) is "saturated". The threshold-free number is the mean derivative.
TANH_SATURATION = 5.0
TANH_PARTLY_SATURATED = 2.0
GATE_LOW, GATE_HIGH = 0.1, 0.9
SATURATION_LIMITS = 0.9  # mean f'(z) below 0.9, and growth per step below 0.9 x rho(W_hh): saturation limits it
NON_NORMAL_GAP = 0.05  # sigma_max and rho differing by more than 5% of sigma_max: a non-normal W_hh
VANISHING_RATIO, EXPLODING_RATIO = 1e-2, 1e2  # gradient ratio across the probe window
HISTOGRAM_BINS = 20
DENSE_LIMIT = 512  # state units (or matrix rows/columns) up to which a full SVD is cheap; Lanczos above
EIGEN_LIMIT = 768  # W_hh blocks up to this size get their eigenvalues by default (a dense eig is O(H^3))
DENSE_CHUNK_ELEMENTS = 2**25  # Jacobian entries formed at once on the dense path
LANCZOS_CHUNK_ELEMENTS = 2**27  # state entries (times iterations) kept at once on the Lanczos path
LANCZOS_MAX_ITERS = 100
LANCZOS_TOL = 1e-6  # relative change per iteration; float32 products settle at ~1e-7
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


def jacobian_norms(probe: Probe, max_sequences: int = 4, method: str = "auto",
                   progress: Progress | None = None) -> list[dict[str, Any]]:
    """||d state_t / d state_{t-1}||_2 (largest singular value; state_{t-d} in a layer with dilation d) at every
    step, for the first ``max_sequences`` sequences, with the layer's input x_t held fixed. The state is h for
    vanilla cells and GRU, and the pair (h, c) for LSTM (a 2H x 2H Jacobian). For vanilla cells the document's
    bound max|f'(z_t)| * sigma_max(W_hh) is given next to it (it does not apply to gates).

    ``method``: dense (form each Jacobian, full SVD), lanczos (Jacobian-vector and vector-Jacobian products,
    never the matrix: linalg.largest_singular_values) or auto (dense up to DENSE_LIMIT state units)."""
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

        used = ("dense" if dim <= DENSE_LIMIT else "lanczos") if method == "auto" else method
        flat_states, flat_x = states.reshape(steps * s, dim), xs.reshape(steps * s, -1)
        records = {name: torch.cat([probe.trace.steps[layer][t][name].detach()[:s] for t in range(steps)])
                   for name in probe.trace.steps[layer][0]}
        operator = step_jacobian_operator(
            probe.cell, weights[1], weights[3], records, torch.cat([h.detach()[:s] for h in prev_h]),
            torch.cat([c.detach()[:s] for c in prev_c]) if lstm else None)
        norms, iterations = _step_norms(advance, flat_states, flat_x, used, layer, progress, operator)
        norms = norms.view(steps, s)
        entry: dict[str, Any] = {"state": STATE_NAMES[probe.cell], "sequences": s, "method": used,
                                 "iterations": iterations,
                                 "norm": norms.mean(1).tolist(), "norm_max": norms.max(1).values.tolist()}
        if probe.cell in ("rnn_tanh", "rnn_relu"):
            sigma = sigma_max(weights[1])
            z = torch.stack([probe.trace.steps[layer][t]["z"].detach()[:s] for t in range(steps)])  # (T, S, H)
            bound = _activation_derivative(probe.cell, z).abs().amax(-1).double() * sigma  # (T, S)
            entry["bound"] = bound.mean(1).tolist()
            entry["max_norm_over_bound"] = float((norms / bound.clamp_min(1e-300)).max())
        else:
            entry["bound"] = None
        results.append(entry)
    return results


def _step_norms(advance: Callable[..., torch.Tensor], states: torch.Tensor, xs: torch.Tensor, method: str,
                layer: int, progress: Progress | None,
                operator: Callable[[slice], tuple[MatVec, MatVec]] | None = None) -> tuple[torch.Tensor, int | None]:
    """(N,) largest singular value of each d advance(s_i, x_i) / d s_i, in chunks; and the Lanczos iterations
    the slowest chunk took (None: dense). ``operator(rows)`` gives the products with the Jacobians of those
    rows (step_jacobian_operator); without it, torch.func.jvp / vjp through ``advance`` give them."""
    count, dim = states.shape
    budget = DENSE_CHUNK_ELEMENTS if method == "dense" else LANCZOS_CHUNK_ELEMENTS
    per_chunk = max(1, budget // (dim * dim if method == "dense" else dim * LANCZOS_MAX_ITERS))
    batched = torch.func.vmap(advance)
    norms, iterations = [], None
    if progress is not None:
        progress("jacobians", layer, 0, count)
    for begin in range(0, count, per_chunk):
        rows = slice(begin, begin + per_chunk)
        chunk_states, chunk_x = states[rows], xs[rows]
        if method == "dense":
            jacobians = torch.func.vmap(torch.func.jacrev(advance))(chunk_states, chunk_x)
            norms.append(torch.linalg.matrix_norm(jacobians.double(), ord=2))
        elif method == "lanczos":
            if operator is not None:
                matvec, rmatvec = operator(rows)
            else:
                def forward(state: torch.Tensor, chunk_x=chunk_x) -> torch.Tensor:
                    return batched(state, chunk_x)

                _, pullback = torch.func.vjp(forward, chunk_states)
                matvec = lambda v, forward=forward, at=chunk_states: torch.func.jvp(forward, (at,), (v,))[1]  # noqa: E731
                rmatvec = lambda u, pullback=pullback: pullback(u)[0]  # noqa: E731
            found = largest_singular_values(matvec, rmatvec, chunk_states.size(0), dim, dtype=states.dtype,
                                            device=states.device, tol=LANCZOS_TOL, max_iters=LANCZOS_MAX_ITERS,
                                            generator=_lanczos_generator(states.device))
            norms.append(found.values.double())
            iterations = max(iterations or 0, found.iterations)
        else:
            raise ValueError(f"unknown method {method!r} (methods: auto, dense, lanczos)")
        if progress is not None:
            progress("jacobians", layer, min(begin + per_chunk, count), count)
    return torch.cat(norms), iterations


def step_jacobian_operator(
    cell: str, w_hh: torch.Tensor, b_hh: torch.Tensor | None, records: dict[str, torch.Tensor], prev_h: torch.Tensor,
    prev_c: torch.Tensor | None,
) -> Callable[[slice], tuple[MatVec, MatVec]]:
    """Products with the step Jacobians d state_t / d state_{t-1} of N items (rows: steps x sequences), written
    out from the cell's equations with the gate values the reference pass recorded: each product is one
    (N, H) x (H, G*H) matrix product and elementwise work, about a third of a torch.func.jvp through the step
    (which recomputes the forward pass). Equal to autograd's products (tested for every cell).

    ``records``: the step intermediates stacked over the items, (N, H) each; state = h, or (h, c) for lstm."""
    hidden = w_hh.size(1)

    def operator(rows: slice) -> tuple[MatVec, MatVec]:
        r = {name: value[rows] for name, value in records.items()}
        h_prev = prev_h[rows]
        if cell in ("rnn_tanh", "rnn_relu"):
            slope = _activation_derivative(cell, r["z"])
            return (lambda v: slope * (v @ w_hh.t()),
                    lambda u: (slope * u) @ w_hh)
        if cell == "lstm":
            i, f, g, o, c = r["i"], r["f"], r["g"], r["o"], r["c"]
            c_prev = prev_c[rows]
            tanh_c = torch.tanh(c)
            di, df, dg, do = i * (1 - i), f * (1 - f), 1 - g * g, o * (1 - o)
            through_c = o * (1 - tanh_c * tanh_c)

            def matvec(v: torch.Tensor) -> torch.Tensor:
                v_h, v_c = v[:, :hidden], v[:, hidden:]
                u_i, u_f, u_g, u_o = (v_h @ w_hh.t()).chunk(4, dim=-1)
                dc = df * u_f * c_prev + f * v_c + di * u_i * g + i * dg * u_g
                return torch.cat([do * u_o * tanh_c + through_c * dc, dc], dim=-1)

            def rmatvec(u: torch.Tensor) -> torch.Tensor:
                u_h, u_c = u[:, :hidden], u[:, hidden:]
                to_c = u_c + u_h * through_c
                gates = torch.cat([to_c * g * di, to_c * c_prev * df, to_c * i * dg, u_h * tanh_c * do], dim=-1)
                return torch.cat([gates @ w_hh, to_c * f], dim=-1)

            return matvec, rmatvec
        if cell == "gru":
            reset, update, new = r["r"], r["z"], r["n"]
            w_n = w_hh[2 * hidden :]
            h_n = h_prev @ w_n.t() + (0 if b_hh is None else b_hh[2 * hidden :])  # W_hn h + b_hn, inside r * (...)
            dr, dz, dn = reset * (1 - reset), update * (1 - update), 1 - new * new

            def matvec(v: torch.Tensor) -> torch.Tensor:
                u_r, u_z, u_n = (v @ w_hh.t()).chunk(3, dim=-1)
                d_new = dn * (dr * u_r * h_n + reset * u_n)
                return (1 - update) * d_new + dz * u_z * (h_prev - new) + update * v

            def rmatvec(u: torch.Tensor) -> torch.Tensor:
                to_new = u * (1 - update) * dn
                gates = torch.cat([to_new * h_n * dr, u * (h_prev - new) * dz, to_new * reset], dim=-1)
                return gates @ w_hh + u * update

            return matvec, rmatvec
        raise ValueError(f"unknown cell {cell!r}")

    return operator


def _lanczos_generator(device: torch.device) -> torch.Generator:
    """A fixed start for the iterations: the same numbers every run, and the global RNG left alone (diagnostics
    during training must not change what training draws)."""
    return torch.Generator(device=device).manual_seed(0)


def sigma_max(matrix: torch.Tensor) -> float:
    """||W||_2, the largest singular value: a full SVD up to DENSE_LIMIT rows and columns, Lanczos above."""
    w = matrix.detach()
    if max(w.shape) <= DENSE_LIMIT:
        return float(torch.linalg.matrix_norm(w.double(), ord=2))
    return float(matrix_sigma_max(w.double(), generator=_lanczos_generator(w.device)).values[0])


# ---------------------------------------------------------------- 3. W_hh spectra


def matrix_spectrum(matrix: torch.Tensor, eigenvalues: bool = False,
                    eigen_limit: int | None = EIGEN_LIMIT) -> dict[str, Any]:
    """sigma_max (= ||W||_2), the spectral radius rho = max |eigenvalue| (square matrices only), and
    whether they differ by more than 5%: equal for normal matrices, sigma_max > rho otherwise.

    ``eigenvalues`` lists them all too. A dense eigendecomposition costs O(H^3) (seconds for a 1500 x 1500
    block), so above ``eigen_limit`` units it is skipped (rho None, ``eigen_skipped`` True); None: no limit."""
    w = matrix.detach().double()
    sigma = sigma_max(w)
    out: dict[str, Any] = {"shape": list(w.shape), "sigma_max": sigma, "spectral_radius": None, "non_normal": None}
    if w.size(0) != w.size(1):
        return out
    if eigen_limit is not None and w.size(0) > eigen_limit:
        out["eigen_skipped"] = True
        return out
    eig = torch.linalg.eigvals(w)
    rho = float(eig.abs().max())
    out["spectral_radius"] = rho
    out["non_normal"] = bool(sigma > 0 and (sigma - rho) / sigma > NON_NORMAL_GAP)
    if eigenvalues:
        out["eigenvalues"] = {"real": eig.real.tolist(), "imag": eig.imag.tolist()}
    return out


def recurrent_spectra(rnn: nn.Module, eigenvalues: bool = False, eigen_limit: int | None = EIGEN_LIMIT,
                      progress: Progress | None = None) -> list[dict[str, Any]]:
    """Per layer: the whole W_hh and, for LSTM / GRU, each gate's (H, H) block (the options: matrix_spectrum)."""
    cell = rnn.cell
    results = []
    for layer in range(rnn.num_layers):
        if progress is not None:
            progress("spectra", layer, layer, rnn.num_layers)
        w_hh = rnn.layer_weights(layer).weight_hh
        gates = {}
        if cell in ("lstm", "gru"):
            for name, block in zip(GATES[cell], w_hh.chunk(len(GATES[cell]), dim=0)):
                gates[name] = matrix_spectrum(block, eigenvalues, eigen_limit)
        results.append({"whole": matrix_spectrum(w_hh, eigenvalues, eigen_limit), "gates": gates})
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
    """Per layer: the mean derivative f'(z) of the tanh (relu) units, the fraction partly saturated (|z| > 2)
    and saturated (|z| > 5; for relu: f'(z) = 0), a histogram of f'(z) per nonlinearity; for gates, the mean
    and the fractions left- / right-saturated (below 0.1 / above 0.9)."""
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
                entry["partly_saturated_fraction"] = float((z.abs() > TANH_PARTLY_SATURATED).double().mean())
            nonlinearities[name] = entry
        gates = {}
        for name in SIGMOID_GATES[probe.cell]:
            g = torch.stack([r[name].detach() for r in records]).double()
            low, high = float((g < GATE_LOW).double().mean()), float((g > GATE_HIGH).double().mean())
            gates[name] = {"mean": float(g.mean()), "left_saturated": low, "right_saturated": high,
                           "saturated_fraction": low + high}
        all_z = torch.cat([z.flatten() for z in inputs.values()])
        relu = probe.cell == "rnn_relu"
        saturated = (all_z <= 0) if relu else (all_z.abs() > TANH_SATURATION)
        results.append({
            "threshold": None if relu else TANH_SATURATION,  # relu: the zero-derivative side
            "partial_threshold": None if relu else TANH_PARTLY_SATURATED,
            "gate_thresholds": [GATE_LOW, GATE_HIGH],
            "mean_derivative": float(_activation_derivative(probe.cell, all_z).mean()),
            "saturated_fraction": float(saturated.double().mean()),
            "partly_saturated_fraction": None if relu else float((all_z.abs() > TANH_PARTLY_SATURATED).double().mean()),
            "nonlinearities": nonlinearities, "gates": gates})
    return results


# ---------------------------------------------------------------- 5. verdict


def verdict(flow: dict[str, Any], spectrum: dict[str, Any], sat: dict[str, Any], steps: int,
            cell: str = "rnn_tanh") -> dict[str, Any]:
    """vanishing / exploding / healthy, from how ||d cost_n / d h_t|| changes across the probe window; the reason
    names the weights (sigma_max of the whole W_hh), the saturation, and which of them limits the gradient."""
    ratio, gain = flow["ratio"], flow["gain_per_step"]
    sigma = spectrum["whole"]["sigma_max"]
    numbers = {"ratio": ratio, "gain_per_step": gain, "steps": steps, "sigma_max": sigma,
               "mean_derivative": sat["mean_derivative"], "saturated_fraction": sat["saturated_fraction"],
               "partly_saturated_fraction": sat["partly_saturated_fraction"]}
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
    reason += f"; sigma_max(W_hh) = {sigma:.3g}; {_saturation_words(sat)}"
    cause = _limiting_factor(kind, gain, spectrum, sat, cell)
    if cause:
        reason += f"; {cause}"
    return {"verdict": kind, "reason": reason, "numbers": numbers}


def _saturation_words(sat: dict[str, Any]) -> str:
    if sat["threshold"] is None:  # relu
        return f"mean relu'(z) {sat['mean_derivative']:.2f} ({100 * sat['saturated_fraction']:.1f}% of units at 0)"
    return (f"mean f'(z) {sat['mean_derivative']:.2f} ({100 * sat['partly_saturated_fraction']:.1f}% of |z| > "
            f"{sat['partial_threshold']:g}, {100 * sat['saturated_fraction']:.1f}% > {sat['threshold']:g})")


def _limiting_factor(kind: str, gain: float | None, spectrum: dict[str, Any], sat: dict[str, Any], cell: str) -> str:
    """Whether the weights or the saturation set the gradient's fate. Vanilla cells: one step multiplies it by
    diag(f'(z)) W_hh; over many steps W_hh contributes its spectral radius rho (sigma_max bounds a single step, and
    a non-normal W_hh has rho < sigma_max), the units their derivative. LSTM: the forget gate scales the
    cell-state path."""
    if cell == "lstm" and "f" in sat["gates"]:
        forget = sat["gates"]["f"]
        if kind == "vanishing":
            return (f"the cell state keeps on average {forget['mean']:.2f} of itself per step (forget gate mean; "
                    f"{100 * forget['left_saturated']:.0f}% of units below {GATE_LOW:g}): it forgets")
        return ""
    if cell not in ("rnn_tanh", "rnn_relu"):
        return ""
    whole = spectrum["whole"]
    rho, sigma = whole["spectral_radius"], whole["sigma_max"]
    weights = rho if rho is not None else sigma  # what the weights give per step in the long run
    name = "rho(W_hh)" if rho is not None else "sigma_max(W_hh)"
    derivative = sat["mean_derivative"]
    saturated = derivative < SATURATION_LIMITS  # units pass clearly less than the whole gradient
    if kind == "vanishing":
        if weights < 1:
            return f"the weights make it vanish: {name} = {weights:.3g} < 1 shrinks it step after step"
        if saturated:
            return (f"saturation, not the weights, makes it vanish: {name} = {weights:.3g} >= 1, but units pass on "
                    f"average {derivative:.2f} of the gradient")
        return ""
    if weights > 1 and gain is not None and gain < SATURATION_LIMITS * weights and saturated:
        return (f"saturation limits the growth: x{gain:.3g} per step against {name} = {weights:.3g}, with mean "
                f"f'(z) {derivative:.2f}")
    if kind == "exploding":
        return f"the weights make it explode: {name} = {weights:.3g} > 1 and little saturation"
    return ""
