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
    gradient_flow,
    jacobian_norms,
    matrix_spectrum,
    recurrent_spectra,
    run_probe,
    saturation,
    verdict,
)

SCHEMA_VERSION = 2  # 2: layer_sizes, skip, dilations, depth_norm, span

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


def diagnose(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
             jacobian_sequences: int = 4) -> dict[str, Any]:
    """Every measurement, per recurrent layer, as plain JSON-ready data."""
    probe = run_probe(model, inputs, targets)
    flow = gradient_flow(probe)
    jacobians = jacobian_norms(probe, jacobian_sequences)
    spectra = recurrent_spectra(model.rnn, eigenvalues=True)
    sat = saturation(probe)
    layers = [
        {"layer": layer, "gradient_flow": flow[layer], "jacobian": jacobians[layer], "spectrum": spectra[layer],
         "saturation": sat[layer], "verdict": verdict(flow[layer], spectra[layer], sat[layer], probe.steps)}
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
        "layers": layers,
    }


def summary_records(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> list[dict[str, Any]]:
    """One flat record per layer (no Jacobians, no eigenvalue lists): cheap enough to log while training."""
    probe = run_probe(model, inputs, targets)
    flow = gradient_flow(probe)
    spectra = recurrent_spectra(model.rnn)
    sat = saturation(probe)
    records = []
    for layer in range(len(flow)):
        spectrum = spectra[layer]
        blocks = list(spectrum["gates"].values()) or [spectrum["whole"]]
        record = {
            "layer": layer,
            "grad_log_gain_per_step": flow[layer]["log_gain_per_step"],
            "grad_ratio": flow[layer]["ratio"],
            "grad_depth_norm": flow[layer]["depth_norm"],
            "sigma_max": max(b["sigma_max"] for b in blocks),
            "spectral_radius": max(b["spectral_radius"] for b in blocks),
            "saturated_fraction": sat[layer]["saturated_fraction"],
            "verdict": verdict(flow[layer], spectrum, sat[layer], probe.steps)["verdict"],
        }
        if "f" in sat[layer]["gates"]:
            record["forget_gate_mean"] = sat[layer]["gates"]["f"]["mean"]
        records.append(record)
    return records
