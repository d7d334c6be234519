"""A diagnosis on disk: diagnostics.json, four plots, and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from rnnlab.io import atomic_write_text, strict_json

PLOTS = ("gradient_flow.png", "jacobian.png", "spectrum.png", "saturation.png")

EXPLANATIONS = {
    "gradient_flow.png": (
        "Gradient flow through time. Each line is ||d cost_n / d h_t|| for one layer, against the distance n - t "
        "from the last step (log scale). For a vanilla RNN the chain rule multiplies one Jacobian diag(f'(z_t)) W_hh "
        "per step, so the norm changes roughly geometrically: a falling line is a vanishing gradient, a rising one an "
        "exploding gradient. Dashed: the gradient of the loss summed over all steps, which also collects each step's "
        "own loss. Dotted (LSTM): the same through the cell state c_t, the additive path. Right: the gradient of the "
        "summed loss that reaches each layer's outputs over the whole window, bottom layer first: it shrinks down a "
        "plain deep stack; residual or dense skip connections keep it up."),
    "jacobian.png": (
        "The Jacobian chain. The largest singular value of d h_t / d h_{t-1} at each step (for an LSTM, of the "
        "Jacobian of (h_t, c_t) with respect to (h_{t-1}, c_{t-1}); in a dilated layer with respect to the state d "
        "steps back; a full SVD of the Jacobian for states of up to 512 units, Lanczos iteration on Jacobian-vector "
        "products above, never forming the matrix), next to the document's bound "
        "max|f'(z_t)| * sigma_max(W_hh) for vanilla cells. Values below 1 shrink the gradient at that step, above 1 "
        "grow it."),
    "spectrum.png": (
        "The eigenvalues of each recurrent matrix W_hh (each gate block for LSTM/GRU) in the complex plane, with "
        "the unit circle (solid) and a circle of radius sigma_max, the largest singular value (dashed). The document "
        "equates ||W_hh||_2 with the largest eigenvalue; that holds only for normal matrices: in general the spectral "
        "radius rho is at most sigma_max, and a gap shows a non-normal matrix, whose transient growth the eigenvalues "
        "hide."),
    "saturation.png": (
        "Saturation. Left: the distribution of the derivative f'(z) of each tanh (or relu) in the cell over the probe "
        "batch; mass near 0 means saturated units that pass almost no gradient (|z| > 2 gives tanh'(z) < 0.071, "
        "|z| > 5 tanh'(z) < 0.0002). The mean derivative is the threshold-free number: one step scales the gradient "
        "by diag(f'(z)) W_hh. Right, for gated cells: each gate's mean and the fraction saturated below 0.1 or above "
        "0.9 (Karpathy et al. 2015); a forget gate near 1 keeps the cell state (and its gradient), near 0 erases it."),
}


def write_report(diagnosis: dict[str, Any], out_dir: str | Path, title: str = "rnnlab diagnostics") -> Path:
    """Write diagnostics.json, the plots and report.html into ``out_dir``; return the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "diagnostics.json", strict_json(diagnosis, indent=1))
    plot_gradient_flow(diagnosis, out / "gradient_flow.png")
    plot_jacobian(diagnosis, out / "jacobian.png")
    plot_spectrum(diagnosis, out / "spectrum.png")
    plot_saturation(diagnosis, out / "saturation.png")
    page = render_html(diagnosis, {name: (out / name).read_bytes() for name in PLOTS}, title)
    atomic_write_text(out / "report.html", page)
    return out / "report.html"


# ---------------------------------------------------------------- plots


def pyplot():
    """matplotlib.pyplot on the Agg backend: plots are written to files, no display is needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def plot_gradient_flow(diagnosis: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, (ax, depth_ax) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [7, 4]})
    for entry in diagnosis["layers"]:
        flow = entry["gradient_flow"]
        line = ax.semilogy(flow["distance"], positive_or_gap(flow["last_step"]),
                           label=f"layer {entry['layer']}: cost_n")[0]
        ax.semilogy(flow["distance"], positive_or_gap(flow["all_steps"]), "--", color=line.get_color(), alpha=0.6,
                    label=f"layer {entry['layer']}: sum of costs")
        if "cell_last_step" in flow:
            ax.semilogy(flow["distance"], positive_or_gap(flow["cell_last_step"]), ":", color=line.get_color(),
                        label=f"layer {entry['layer']}: via c_t")
    ax.set_xlabel("distance n - t (steps back from the last)")
    ax.set_ylabel("||d cost / d h_t|| (per sequence)")
    ax.set_title(f"Gradient flow through time ({diagnosis['cell']}, {diagnosis['probe']['steps']} steps)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    layers = [entry["layer"] for entry in diagnosis["layers"]]
    depth_ax.bar(layers, positive_or_gap([entry["gradient_flow"]["depth_norm"] for entry in diagnosis["layers"]]),
                 color=[f"C{i % 10}" for i in range(len(layers))])
    depth_ax.set_yscale("log")
    depth_ax.set_xticks(layers)
    depth_ax.set_xlabel("layer (0 = bottom)")
    depth_ax.set_ylabel("||d sum of costs / d h^l|| (all steps)")
    depth_ax.set_title(f"Gradient flow through depth (skip: {diagnosis.get('skip', 'none')})")
    depth_ax.grid(True, which="both", axis="y", alpha=0.3)
    save_figure(fig, path)


def plot_jacobian(diagnosis: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for entry in diagnosis["layers"]:
        jac = entry["jacobian"]
        steps = range(1, len(jac["norm"]) + 1)
        label = f"layer {entry['layer']}: ||d{jac['state']}_t/d{jac['state']}_t-1||"
        line = ax.plot(steps, jac["norm"], label=label)[0]
        if jac["bound"] is not None:
            ax.plot(steps, jac["bound"], "--", color=line.get_color(), label=f"layer {entry['layer']}: bound")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xlabel("step t")
    ax.set_ylabel("largest singular value")
    ax.set_title("Step Jacobians (exact) and the bound max|f'(z_t)| sigma_max(W_hh)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_spectrum(diagnosis: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    layers = diagnosis["layers"]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 4.2), squeeze=False)
    angles = [2 * math.pi * k / 200 for k in range(201)]
    circle = [math.cos(a) for a in angles], [math.sin(a) for a in angles]
    for ax, entry in zip(axes[0], layers):
        spectrum = entry["spectrum"]
        blocks = spectrum["gates"] or {"W_hh": spectrum["whole"]}
        radius = 0.0
        for name, block in blocks.items():
            eig = block.get("eigenvalues")
            if eig:
                label = f"{name}: rho {block['spectral_radius']:.2f}"
                ax.scatter(eig["real"], eig["imag"], s=6, alpha=0.6, label=label)
            radius = max(radius, block["sigma_max"])
        ax.plot(*circle, color="black", lw=1)
        ax.plot([radius * x for x in circle[0]], [radius * y for y in circle[1]], "--", color="red", lw=1,
                label=f"sigma_max {radius:.2f}")
        ax.set_aspect("equal")
        ax.set_title(f"layer {entry['layer']} W_hh eigenvalues")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    save_figure(fig, path)


def plot_saturation(diagnosis: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    layers = diagnosis["layers"]
    gated = any(entry["saturation"]["gates"] for entry in layers)
    fig, axes = plt.subplots(len(layers), 2 if gated else 1, figsize=(9 if gated else 6, 2.6 * len(layers)),
                             squeeze=False)
    for row, entry in zip(axes, layers):
        sat = entry["saturation"]
        ax = row[0]
        for name, nl in sat["nonlinearities"].items():
            hist = nl["derivative_histogram"]
            centers = [(a + b) / 2 for a, b in zip(hist["edges"][:-1], hist["edges"][1:])]
            ax.plot(centers, hist["fraction"], marker="o", ms=3, label=f"f'({name})")
        ax.set_xlabel("f'(z)")
        ax.set_ylabel("fraction")
        ax.set_title(f"layer {entry['layer']}: mean f'(z) {sat['mean_derivative']:.2f}, "
                     f"{100 * sat['saturated_fraction']:.1f}% saturated")
        ax.legend(fontsize=7)
        if gated:
            ax = row[1]
            names = list(sat["gates"])
            xs = range(len(names))
            ax.bar([x - 0.2 for x in xs], [sat["gates"][n]["mean"] for n in names], width=0.4, label="mean")
            ax.bar([x + 0.2 for x in xs], [sat["gates"][n]["saturated_fraction"] for n in names], width=0.4,
                   label="saturated (<0.1 or >0.9)")
            ax.set_xticks(list(xs), names)
            ax.set_ylim(0, 1)
            ax.set_title(f"layer {entry['layer']} gates")
            ax.legend(fontsize=7)
    save_figure(fig, path)


def positive_or_gap(values: list[float]) -> list[float]:
    """Log axes cannot show 0: draw it as a gap."""
    return [v if v > 0 else float("nan") for v in values]


# ---------------------------------------------------------------- html


def render_html(diagnosis: dict[str, Any], images: dict[str, bytes], title: str) -> str:
    """One page, images embedded as data URIs: it renders with no network and no other files."""
    esc = html.escape
    rows = []
    for entry in diagnosis["layers"]:
        v = entry["verdict"]
        whole = entry["spectrum"]["whole"]
        rho = _radius(whole)
        rows.append(
            f"<tr class='{esc(v['verdict'])}'><td>{entry['layer']}</td><td><b>{esc(v['verdict'])}</b></td>"
            f"<td>{esc(v['reason'])}</td><td>{_number(entry['gradient_flow']['depth_norm'])}</td>"
            f"<td>{whole['sigma_max']:.4g}</td><td>{rho}</td>{_saturation_cells(entry['saturation'])}</tr>")
    gates = []
    for entry in diagnosis["layers"]:
        for name, block in entry["spectrum"]["gates"].items():
            flag = {True: "yes", False: "no", None: "n/a"}[block["non_normal"]]
            gates.append(f"<tr><td>{entry['layer']}</td><td>{esc(name)}</td><td>{block['sigma_max']:.4g}</td>"
                         f"<td>{_radius(block)}</td><td>{flag}</td></tr>")
    gate_table = ""
    if gates:
        gate_table = ("<h3>W_hh per gate block</h3><table><tr><th>layer</th><th>gate</th><th>sigma_max</th>"
                      "<th>rho</th><th>non-normal (&gt;5% apart)</th></tr>" + "".join(gates) + "</table>")
    figures = []
    for name in PLOTS:
        data = base64.b64encode(images[name]).decode("ascii")
        figures.append(f"<figure><img alt='{esc(name)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{esc(EXPLANATIONS[name])}</figcaption></figure>")
    probe = diagnosis["probe"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 960px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
tr.vanishing td:nth-child(2) {{ color: #1f5fbf; }} tr.exploding td:nth-child(2) {{ color: #c0392b; }}
tr.healthy td:nth-child(2) {{ color: #1e8449; }}
figure {{ margin: 2em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #444; margin-top: .5em; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p>Cell <b>{esc(diagnosis['cell'])}</b>, {_layers_text(diagnosis)}{_skip_text(diagnosis)};
probe batch of {probe['batch']} sequences, {probe['steps']} steps, measured through the step-by-step reference path
on the model's own weights (eval mode). Verdict thresholds: the gradient of the last step's loss falling more than
100-fold across the probe window is <i>vanishing</i>, growing more than 100-fold <i>exploding</i>.</p>
<table><tr><th>layer</th><th>verdict</th><th>why</th><th>gradient reaching the layer</th><th>sigma_max(W_hh)</th>
<th>rho(W_hh)</th><th>mean f'(z)</th><th>|z| &gt; 2</th><th>|z| &gt; 5 (relu: f' = 0)</th></tr>{''.join(rows)}</table>
<p>sigma_max(W_hh) is the largest singular value of the whole recurrent matrix (for LSTM / GRU the gate blocks
stacked, 4H x H / 3H x H); the gate blocks' own values are in the table below. {_eigen_text(diagnosis)}</p>
{gate_table}
{''.join(figures)}
<p>Every number is in diagnostics.json (schema: docs/diagnostics.md).</p>
</body></html>
"""


def _radius(block: dict[str, Any]) -> str:
    if block["spectral_radius"] is not None:
        return f"{block['spectral_radius']:.4g}"
    return "skipped (large)" if block.get("eigen_skipped") else "n/a (not square)"


def _saturation_cells(sat: dict[str, Any]) -> str:
    partly = sat.get("partly_saturated_fraction")
    partly_text = "n/a" if partly is None else f"{100 * partly:.2f}%"
    return (f"<td>{sat['mean_derivative']:.3f}</td><td>{partly_text}</td>"
            f"<td>{100 * sat['saturated_fraction']:.2f}%</td>")


def _eigen_text(diagnosis: dict[str, Any]) -> str:
    limit = diagnosis.get("eigen_limit")
    if limit is None:
        return "Every block's eigenvalues were computed."
    return (f"Eigenvalues (rho, the spectrum plot) are computed for blocks of up to {limit} units; larger ones are "
            "skipped (a dense eigendecomposition is O(H^3)): <code>rnnlab diagnose --eigenvalues</code> computes them.")


def _layers_text(diagnosis: dict[str, Any]) -> str:
    sizes = diagnosis.get("layer_sizes") or [diagnosis["hidden_size"]] * diagnosis["num_layers"]
    if len(set(sizes)) == 1:
        return f"{len(sizes)} layer(s) of {sizes[0]} units"
    return f"{len(sizes)} layers of {', '.join(map(str, sizes))} units"


def _number(value: float | None) -> str:
    return "overflow" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _skip_text(diagnosis: dict[str, Any]) -> str:
    parts = []
    if diagnosis.get("skip", "none") != "none":
        parts.append(f"{diagnosis['skip']} skip connections")
    if any(d != 1 for d in diagnosis.get("dilations", [])):
        parts.append(f"dilations {diagnosis['dilations']}")
    return f" ({', '.join(parts)})" if parts else ""
