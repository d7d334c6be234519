"""See the gradient problem: gradient flow through time, step Jacobians, W_hh spectra, saturation.

``diagnose`` measures everything on a probe batch (what ``rnnlab diagnose`` writes to
diagnostics.json); ``summary_records`` gives the cheap summary numbers the trainer logs every
``diagnostics.every_steps``; ``write_report`` turns a diagnosis into plots and an HTML page.
The JSON schema is ``rnnlab/diagnostics/schema.json``, described in docs/diagnostics.md.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rnnlab.diagnostics.measures import (
    EIGEN_LIMIT,
    Progress,
    gradient_flow,
    jacobian_norms,
    matrix_spectrum,
    recurrent_spectra,
    run_probe,
    saturation,
    verdict,
)

SCHEMA_VERSION = 3  # 2: layer_sizes, skip, dilations, depth_norm, span. 3: jacobian method, eigen_limit, mean
# derivatives, partly saturated units, gates saturated by Karpathy et al.'s 0.1 / 0.9 (left_ / right_saturated)

__all__ = [
    "SCHEMA_VERSION",
    "diagnose",
    "gradient_flow",
    "jacobian_norms",
    "matrix_spectrum",
    "recurrent_spectra",
    "run_probe",
    "saturation",
    "summary_records",
    "verdict",
]


def diagnose(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, jacobian_sequences: int = 4,
             jacobian_method: str = "auto", eigenvalues: bool = False,
             progress: Progress | None = None) -> dict[str, Any]:
    """Every measurement, per recurrent layer, as plain JSON-ready data.

    ``jacobian_method``: auto (dense up to DENSE_LIMIT state units, Lanczos above), dense or lanczos.
    ``eigenvalues``: compute every W_hh block's eigenvalues whatever its size (by default only up to
    EIGEN_LIMIT units). ``progress(stage, layer, done, total)`` hears where it stands."""
    def tell(stage: str, layer: int = 0, done: int = 0, total: int = 1) -> None:
        if progress is not None:
            progress(stage, layer, done, total)

    tell("probe")
    probe = run_probe(model, inputs, targets)
    tell("gradient flow")
    flow = gradient_flow(probe)
    jacobians = jacobian_norms(probe, jacobian_sequences, jacobian_method, progress)
    spectra = recurrent_spectra(model.rnn, eigenvalues=True, eigen_limit=None if eigenvalues else EIGEN_LIMIT,
                                progress=progress)
    tell("saturation")
    sat = saturation(probe)
    layers = [
        {"layer": layer, "gradient_flow": flow[layer], "jacobian": jacobians[layer], "spectrum": spectra[layer],
         "saturation": sat[layer],
         "verdict": verdict(flow[layer], spectra[layer], sat[layer], probe.steps, probe.cell)}
        for layer in range(len(flow))
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "cell": probe.cell,
        "num_layers": model.rnn.num_layers,
        "hidden_size": model.rnn.hidden_size,  # the last layer's
        "layer_sizes": list(model.rnn.layer_sizes),
        "skip": model.rnn.skip,
        "dilations": list(model.rnn.dilations),
        "probe": {"steps": probe.steps, "batch": int(probe.trace.hidden[0][0].size(0))},
        "eigen_limit": None if eigenvalues else EIGEN_LIMIT,
        "layers": layers,
    }


def summary_records(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> list[dict[str, Any]]:
    """One flat record per layer (no Jacobians, no eigenvalue lists): cheap enough to log while training.
    ``sigma_max`` is the whole W_hh's, as in diagnose and the verdict; gated cells add ``gate_sigma_max``, the
    largest over the gate blocks."""
    probe = run_probe(model, inputs, targets)
    flow = gradient_flow(probe)
    spectra = recurrent_spectra(model.rnn)
    sat = saturation(probe)
    records = []
    for layer in range(len(flow)):
        spectrum = spectra[layer]
        record = {
            "layer": layer,
            "grad_log_gain_per_step": flow[layer]["log_gain_per_step"],
            "grad_ratio": flow[layer]["ratio"],
            "grad_depth_norm": flow[layer]["depth_norm"],
            "sigma_max": spectrum["whole"]["sigma_max"],
            "spectral_radius": spectrum["whole"]["spectral_radius"],  # None: not square (gated) or skipped
            "mean_derivative": sat[layer]["mean_derivative"],
            "saturated_fraction": sat[layer]["saturated_fraction"],
            "verdict": verdict(flow[layer], spectrum, sat[layer], probe.steps, probe.cell)["verdict"],
        }
        if spectrum["gates"]:
            blocks = spectrum["gates"].values()
            record["gate_sigma_max"] = max(b["sigma_max"] for b in blocks)
            radii = [b["spectral_radius"] for b in blocks if b["spectral_radius"] is not None]
            record["gate_spectral_radius"] = max(radii) if radii else None
        if "f" in sat[layer]["gates"]:
            record["forget_gate_mean"] = sat[layer]["gates"]["f"]["mean"]
        records.append(record)
    return records
