"""``rnnlab demo``: the source document's story, measured, in a few minutes on a CPU.

1. A tanh RNN whose W_hh has sigma_max = 0.9: the gradient of the last step's loss vanishes
   over 100 steps.
2. The same with sigma_max = 1.5: it explodes; clipping the global norm keeps the update bounded.
3. An LSTM on the same inputs: with its forget gate open (bias 3) the gradient survives the 100
   steps; with the default init (f ~ 0.5) it vanishes too, which is why the gate matters.
4. A short LSTM language model on the vendored Penn Treebank: validation perplexity falls.
5. A few sampled words.
6. Dropout on the recurrent connection: the masks of naive dropout (fresh at every step) and of
   variational dropout (one for the window), and how much of the first input still reaches the
   last step's loss under each (Gal & Ghahramani 2016).
7. Skip connections: the gradient reaching the bottom of a deep tanh stack without and with
   residual / dense connections, and how far back in time it reaches without and with dilated
   recurrence (Chang et al. 2017).
8. The vocabulary problem: where the time of a language model's training step goes as the vocabulary
   grows, with the full softmax and with a sampled softmax (Jean et al. 2015).

Everything lands in one folder: report.html (the story, plots embedded), demo.json (every number),
one full diagnostics report per model in cases/, and the language model's run directory.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any

import torch

from rnnlab.config import Config, ModelConfig, RegularizationConfig, load_config
from rnnlab.data.corpus import load_corpus
from rnnlab.data.synthetic import make_task, seeded_generator
from rnnlab.data.tokenizers import get_tokenizer
from rnnlab.diagnostics import diagnose, gradient_flow, run_probe
from rnnlab.diagnostics.report import positive_or_gap, pyplot, save_figure, write_report
from rnnlab.generation import generate
from rnnlab.io import atomic_write_text, strict_json
from rnnlab.models.sequence_model import SequenceModel
from rnnlab.training.loop import clip_gradients
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Observer, Trainer


@dataclass(frozen=True)
class DemoSettings:
    length: int = 100  # steps the gradient travels in parts 1-3
    hidden_size: int = 64
    probe_batch: int = 16
    clip_norm: float = 1.0
    lm_hidden_size: int = 128
    lm_max_steps: int = 1200
    lm_max_minutes: float = 1.5
    lm_valid_tokens: int = 10_000  # validation slice: the demo shows the trend, rnnlab eval gives exact numbers
    generate_tokens: int = 20
    recurrent_dropout: float = 0.25  # part 6
    dropout_draws: int = 50  # masks averaged over in part 6
    deep_layers: int = 8  # part 7's deep stack
    dilations: tuple[int, ...] = (1, 2, 4, 8)  # part 7's dilated stack
    vocab_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)  # part 8
    vocab_samples: int = 1024  # part 8's sampled softmax candidates
    vocab_repeats: int = 3  # part 8: timed calls per part (the median)
    seed: int = 1

    @classmethod
    def quick(cls) -> DemoSettings:
        """A reduced run for the test suite: the same steps, tiny sizes."""
        return cls(length=30, hidden_size=16, probe_batch=4, lm_hidden_size=16, lm_max_steps=12,
                   lm_max_minutes=1.0, lm_valid_tokens=400, generate_tokens=5, dropout_draws=5, deep_layers=4,
                   vocab_sizes=(300, 3000), vocab_samples=64, vocab_repeats=1)


CASES = (
    # name, label, cell, model settings
    ("tanh-0.9", "tanh RNN, sigma_max(W_hh) = 0.9", "rnn_tanh",
     {"recurrent_init": "orthogonal", "recurrent_scale": 0.9}),
    ("tanh-1.5", "tanh RNN, sigma_max(W_hh) = 1.5", "rnn_tanh",
     {"recurrent_init": "orthogonal", "recurrent_scale": 1.5}),
    ("lstm-forget-3", "LSTM, forget-gate bias 3", "lstm", {"forget_bias": 3.0}),
    ("lstm-default", "LSTM, default init (f ~ 0.5)", "lstm", {}),
)


def run_demo(out_dir: str | Path, settings: DemoSettings = DemoSettings(),
             say: Callable[[str], None] = lambda line: None, observers: tuple[Observer, ...] = ()) -> dict[str, Any]:
    """Run the demo into ``out_dir``; return every number (also written to demo.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = make_task("adding", settings.length)
    inputs, targets = task.sample(settings.probe_batch, seeded_generator(settings.seed, 3))
    result: dict[str, Any] = {"settings": settings.__dict__, "gradient": [], "clipping": None, "language_model": None,
                              "dropout": None, "skip": None, "vocabulary": None}

    say(f"1-3. gradient of the last step's loss, {settings.length} steps back, on adding-problem inputs")
    models = {}
    for name, label, cell, extra in CASES:
        torch.manual_seed(settings.seed)
        config = ModelConfig(cell=cell, num_layers=1, hidden_size=settings.hidden_size, init="default", **extra)
        model = SequenceModel.from_config(config, task)
        models[name] = model
        diagnosis = diagnose(model, inputs, targets, jacobian_sequences=2)
        write_report(diagnosis, out / "cases" / name, title=f"rnnlab demo: {label}")
        layer = diagnosis["layers"][0]
        flow, whole = layer["gradient_flow"], layer["spectrum"]["whole"]
        row = {"name": name, "label": label, "verdict": layer["verdict"]["verdict"], "ratio": flow["ratio"],
               "gain_per_step": flow["gain_per_step"], "sigma_max": whole["sigma_max"],
               "spectral_radius": whole["spectral_radius"], "last_step": flow["last_step"],
               "cell_last_step": flow.get("cell_last_step")}
        result["gradient"].append(row)
        ratio = _fmt(row["ratio"], ".3g")
        say(f"   {label:<34} {row['verdict']:<9} gradient x{ratio} over {settings.length - 1} steps")

    result["clipping"] = _clipping_step(models["tanh-1.5"], inputs, targets, settings.clip_norm)
    clip = result["clipping"]
    say(f"   clipping (sigma_max 1.5): gradient norm {clip['grad_norm']:.3g}; SGD step lr {clip['lr']}: update "
        f"{clip['update_norm']:.3g} unclipped, {clip['clipped_update_norm']:.3g} clipped at {settings.clip_norm}")

    say("4. a short LSTM language model on the vendored Penn Treebank")
    result["language_model"] = _train_language_model(out / "lm-run", settings, observers)
    lm = result["language_model"]
    say(f"   validation perplexity {lm['valid_ppl'][0]:.0f} -> {lm['valid_ppl'][-1]:.0f} in {lm['steps']} steps")
    say(f"5. sample: {lm['sample']!r}")

    say(f"6. dropout p = {settings.recurrent_dropout} on h_(t-1) of the LSTM (forget bias 3): how much of the first "
        "input reaches the last step's loss")
    result["dropout"] = _recurrent_dropout(task, inputs, targets, settings, out / "dropout_masks.png")
    for row in result["dropout"]["rows"]:
        say(f"   {row['kind']:<12} ||d cost_n / d x_1|| / ||d cost_n / d x_n|| = {row['reach']:.3g} "
            f"(median of {row['draws']} mask draws)")

    say(f"7. skip connections: a {settings.deep_layers}-layer tanh stack; a dilated one, {list(settings.dilations)}")
    result["skip"] = _skip_connections(task, inputs, targets, settings, out / "skip_connections.png")
    for row in result["skip"]["depth"]:
        say(f"   skip {row['skip']:<9} gradient reaching the bottom layer / the top one = {row['bottom_over_top']:.3g}")
    for row in result["skip"]["time"]:
        say(f"   dilations {str(row['dilations']):<13} ||d cost_n / d x_1|| / ||d cost_n / d x_n|| = "
            f"{row['reach']:.3g}")

    say(f"8. the vocabulary problem: one training step of a 2-layer LSTM LM ({settings.lm_hidden_size} units, batch "
        f"20 x bptt 35) as V grows, full softmax vs sampled (S = {settings.vocab_samples})")
    result["vocabulary"] = _vocabulary(settings, out / "vocabulary.png")
    for row in result["vocabulary"]["rows"]:
        say(f"   V {row['vocab']:>7,}: recurrent {row['recurrent_ms']:7.1f} ms, output layer {row['full_ms']:8.1f} ms "
            f"full ({row['full_share']:.0%} of the step), {row['sampled_ms']:6.1f} ms sampled: step "
            f"x{row['step_speedup']:.2f} faster")

    atomic_write_text(out / "demo.json", strict_json(result, indent=1))
    _plot_gradients(result, out / "gradient_flow.png")
    _plot_language_model(result, out / "lm_training.png")
    atomic_write_text(out / "report.html", _render(result, out))
    result["report"] = str(out / "report.html")
    return result


def _clipping_step(model: SequenceModel, inputs: torch.Tensor, targets: torch.Tensor, clip: float) -> dict[str, float]:
    """One SGD step's update size with and without clipping the global gradient norm (Pascanu 2013)."""
    lr = 0.1
    model.zero_grad()
    out = model(inputs, targets)
    (out.loss / out.tokens).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = float(clip_gradients(params, clip))  # the pre-clip norm; the gradients are now clipped
    after = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
    model.zero_grad()
    return {"lr": lr, "grad_norm": norm, "update_norm": lr * norm, "clipped_update_norm": lr * after,
            "clip_norm": clip}


def _recurrent_dropout(task, inputs: torch.Tensor, targets: torch.Tensor, settings: DemoSettings,
                       figure: Path) -> dict[str, Any]:
    """Part 6: one LSTM, three ways of dropping h_(t-1): none, naive (a fresh mask every step) and
    variational (one mask for every step). For each, in training mode, the gradient of the last step's
    loss with respect to the first input relative to the last input, the median over mask draws."""
    torch.manual_seed(settings.seed)
    config = ModelConfig(cell="lstm", num_layers=1, hidden_size=settings.hidden_size, init="default", forget_bias=3.0)
    weights = SequenceModel.from_config(config, task).state_dict()
    rows, masks = [], {}
    for kind in ("none", "naive", "variational"):
        p = 0.0 if kind == "none" else settings.recurrent_dropout
        reg = RegularizationConfig(recurrent_dropout=p,
                                   recurrent_dropout_kind="variational" if kind == "none" else kind)
        model = SequenceModel.from_config(config, task, reg)
        model.load_state_dict(weights)  # the same weights for all three
        model.train()
        draws = 1 if kind == "none" else settings.dropout_draws
        reach = []
        for _ in range(draws):
            noise = model.rnn.sample_noise(inputs.size(0), inputs.size(1), model.rnn_inputs(inputs))
            if noise is not None and kind not in masks:
                masks[kind] = noise.recurrent[0]
            per_step = _input_gradient(model, inputs, targets, noise)
            reach.append(float(per_step[0] / per_step[-1]))
        rows.append({"kind": kind, "p": p, "reach": sorted(reach)[len(reach) // 2], "draws": draws})
    _plot_masks(masks, settings, figure)
    return {"rows": rows, "figure": figure.name}


def _input_gradient(model: SequenceModel, inputs: torch.Tensor, targets: torch.Tensor, noise=None) -> torch.Tensor:
    """(T,): ||d cost_n / d x_t|| for the stack's input at each step, averaged over the batch."""
    x = model.rnn_inputs(inputs).detach().requires_grad_()  # (T, B, I)
    hidden, _ = model.rnn(x, None, noise)
    (grad,) = torch.autograd.grad(model.step_costs(hidden, targets)[-1], x)
    return grad.double().norm(dim=-1).mean(1)


def _skip_connections(task, inputs: torch.Tensor, targets: torch.Tensor, settings: DemoSettings,
                      figure: Path) -> dict[str, Any]:
    """Part 7, measured at init on the adding inputs: the gradient of the summed loss reaching each
    layer of a deep tanh stack (plain, residual, dense), and the reach in time of a stack of
    len(dilations) tanh layers, plain and dilated (W_hh orthogonal, sigma_max 0.9, as in part 1)."""
    depth = []
    for skip in ("none", "residual", "dense"):
        torch.manual_seed(settings.seed)
        config = ModelConfig(cell="rnn_tanh", num_layers=settings.deep_layers, hidden_size=settings.hidden_size,
                             init="default", skip=skip)
        flow = gradient_flow(run_probe(SequenceModel.from_config(config, task), inputs, targets))
        norms = [entry["depth_norm"] for entry in flow]
        depth.append({"skip": skip, "depth_norm": norms, "bottom_over_top": norms[0] / norms[-1]})
    time = []
    for dilations in ((1,) * len(settings.dilations), settings.dilations):
        torch.manual_seed(settings.seed)
        config = ModelConfig(cell="rnn_tanh", num_layers=len(dilations), hidden_size=settings.hidden_size,
                             init="default", recurrent_init="orthogonal", recurrent_scale=0.9, dilations=dilations)
        model = SequenceModel.from_config(config, task).eval()
        per_step = _input_gradient(model, inputs, targets)
        time.append({"dilations": list(dilations), "reach": float(per_step[0] / per_step[-1]),
                     "by_distance": per_step.flip(0).tolist()})
    _plot_skip(depth, time, figure)
    return {"depth": depth, "time": time, "figure": figure.name}


def _vocabulary(settings: DemoSettings, figure: Path) -> dict[str, Any]:
    """Part 8: for each vocabulary size, the median time of the recurrent part of a training step (embedding
    and LSTM, forward and backward) and of the output layer's forward and backward, full and sampled, on
    Zipfian (log-uniform) token ids. The sampled layer shares the full one's weights."""
    from rnnlab.models import RNNLanguageModel
    from rnnlab.nn.output import CandidateSampler, make_output_layer

    steps, batch, width = 35, 20, settings.lm_hidden_size
    rows = []
    for vocab in settings.vocab_sizes:
        torch.manual_seed(settings.seed)
        ids = CandidateSampler("log_uniform", vocab).draw((steps + 1) * batch, replacement=True).ids
        ids = ids.view(steps + 1, batch)
        inputs, targets = ids[:-1], ids[1:].reshape(-1)
        model = RNNLanguageModel(vocab, embedding_dim=width, hidden_size=width, num_layers=2).train()
        sampled = make_output_layer("sampled", width, vocab, num_samples=settings.vocab_samples).train()
        sampled.load_state_dict(model.output.state_dict())
        features = model.features(inputs)[0].detach().reshape(-1, width).requires_grad_()
        recurrent_ms = _median_ms(partial(_recurrent_pass, model, inputs), settings.vocab_repeats)
        full_ms = _median_ms(partial(_output_pass, model.output, features, targets), settings.vocab_repeats)
        sampled_ms = _median_ms(partial(_output_pass, sampled, features, targets), settings.vocab_repeats)
        rows.append({"vocab": vocab, "recurrent_ms": recurrent_ms, "full_ms": full_ms, "sampled_ms": sampled_ms,
                     "full_share": full_ms / (recurrent_ms + full_ms),
                     "step_speedup": (recurrent_ms + full_ms) / (recurrent_ms + sampled_ms)})
    _plot_vocabulary(rows, figure)
    return {"rows": rows, "samples": settings.vocab_samples, "figure": figure.name}


def _recurrent_pass(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    model.features(inputs)[0].sum().backward()


def _output_pass(layer: torch.nn.Module, features: torch.Tensor, targets: torch.Tensor) -> None:
    layer(features, targets).loss.backward()


def _median_ms(run: Callable[[], None], repeats: int) -> float:
    """The median wall time of ``repeats`` calls, after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = perf_counter()
        run()
        times.append(1000 * (perf_counter() - started))
    return sorted(times)[len(times) // 2]


def _plot_vocabulary(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    positions = range(len(rows))
    for offset, (key, label) in zip((-0.2, 0.2), (("full_ms", "full softmax"), ("sampled_ms", "sampled softmax"))):
        xs = [x + offset for x in positions]
        recurrent = [r["recurrent_ms"] for r in rows]
        ax.bar(xs, recurrent, width=0.38, color="0.7", label="embedding + LSTM" if offset < 0 else None)
        ax.bar(xs, [r[key] for r in rows], width=0.38, bottom=recurrent, label=f"output layer: {label}",
               color="C3" if key == "full_ms" else "C0")
    ax.set_xticks(list(positions), [f"V = {r['vocab']:,}" for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("ms per training step (forward + backward)")
    ax.set_title("Where a training step's time goes as the vocabulary grows")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_skip(depth: list[dict[str, Any]], time: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for row in depth:
        left.semilogy(range(len(row["depth_norm"])), positive_or_gap(row["depth_norm"]), "o-",
                      label=f"skip: {row['skip']}")
    left.set_xlabel("layer (0 = bottom)")
    left.set_ylabel("||d cost / d h^l|| (all steps)")
    left.set_title("Through depth: the gradient reaching each layer")
    for row in time:
        right.semilogy(range(len(row["by_distance"])), positive_or_gap(row["by_distance"]),
                       label=f"dilations {row['dilations']}")
    right.set_xlabel("distance n - t (steps back from the last)")
    right.set_ylabel("||d cost_n / d x_t||")
    right.set_title("Through time: the last step's gradient at each input")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_masks(masks: dict[str, torch.Tensor], settings: DemoSettings, path: Path) -> None:
    """The mask on h_(t-1) of one sequence, unit by step: naive changes every step, variational never."""
    plt = pyplot()
    steps, units = settings.length, min(settings.hidden_size, 32)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, kind in zip(axes, ("naive", "variational")):
        mask = masks[kind]
        grid = mask[:, 0, :units] if mask.dim() == 3 else mask[:units].expand(steps, units)  # (T, units)
        ax.imshow((grid > 0).t().float().numpy(), aspect="auto", cmap="gray", interpolation="nearest")
        ax.set_title(f"{kind}: {'a fresh mask every step' if kind == 'naive' else 'one mask for every step'}")
        ax.set_xlabel("time step")
        ax.set_ylabel("unit of h_(t-1)")
    save_figure(fig, path)


def _train_language_model(run_dir: Path, settings: DemoSettings, observers: tuple[Observer, ...]) -> dict[str, Any]:
    config: Config = load_config("ptb-small", overrides=[
        f"model.hidden_size={settings.lm_hidden_size}", f"model.embedding_dim={settings.lm_hidden_size}",
        f"train.max_steps={settings.lm_max_steps}", f"train.max_minutes={settings.lm_max_minutes}",
        f"train.eval_every_steps={max(settings.lm_max_steps // 4, 1)}", "train.log_every=25",
        f"train.seed={settings.seed}", "train.epochs=1"])
    full = load_corpus(config.data)
    n = settings.lm_valid_tokens
    corpus = full.with_short_eval(n)
    trainer = Trainer(config, run_dir, corpus=corpus, observers=observers)
    before = trainer.workload.evaluate("valid")
    run = trainer.fit()
    records = read_metrics(run.metrics)
    valid = [r for r in records if r["event"] == "eval" and r["split"] == "valid"]
    train = [r for r in records if r["event"] == "train"]
    sample = generate(trainer.model, full.vocab, get_tokenizer("word"), prompt="the", tokens=settings.generate_tokens,
                      temperature=0.8, seed=settings.seed).replace("\n", " / ")
    return {"run_dir": str(run_dir), "steps": run.steps, "valid_step": [0] + [r["step"] for r in valid],
            "valid_ppl": [before["ppl"]] + [r["ppl"] for r in valid], "valid_tokens": before["tokens"],
            "train_step": [r["step"] for r in train], "train_ppl": [r["ppl"] for r in train], "sample": sample}


def _plot_gradients(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for row in result["gradient"]:
        norms = positive_or_gap(row["last_step"])
        ax.semilogy(range(len(norms)), norms, label=f"{row['label']}: {row['verdict']}")
    ax.set_xlabel("distance n - t (steps back from the last)")
    ax.set_ylabel("||d cost_n / d h_t||")
    ax.set_title("How far back does the last step's gradient reach?")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_language_model(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    lm = result["language_model"]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    if lm["train_step"]:
        ax.semilogy(lm["train_step"], lm["train_ppl"], label="training (last 25 steps)")
    ax.semilogy(lm["valid_step"], lm["valid_ppl"], "o-", label=f"validation ({lm['valid_tokens']} tokens)")
    ax.set_xlabel("step")
    ax.set_ylabel("perplexity")
    ax.set_title("LSTM language model on Penn Treebank")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def _fmt(value: float | None, spec: str) -> str:
    """A number, or n/a where it does not exist (the spectral radius of a non-square 4H x H LSTM W_hh)."""
    return "n/a" if value is None else format(value, spec)


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _render(result: dict[str, Any], out: Path) -> str:
    esc = html.escape
    s = result["settings"]
    rows = "".join(
        f"<tr><td>{esc(r['label'])}</td><td><b>{esc(r['verdict'])}</b></td><td>{r['ratio']:.3g}</td>"
        f"<td>{_fmt(r['gain_per_step'], '.3f')}</td><td>{r['sigma_max']:.3f}</td>"
        f"<td>{_fmt(r['spectral_radius'], '.3f')}</td>"
        f"<td><a href='cases/{esc(r['name'])}/report.html'>report</a></td></tr>" for r in result["gradient"])
    clip, lm = result["clipping"], result["language_model"]
    ppl = " &rarr; ".join(f"{p:.0f}" for p in lm["valid_ppl"])
    dropout_rows = "".join(f"<tr><td>{esc(r['kind'])}</td><td>{r['reach']:.3g}</td><td>{r['draws']}</td></tr>"
                           for r in result["dropout"]["rows"])
    skip_rows = "".join(f"<tr><td>{esc(r['skip'])}</td><td>{r['bottom_over_top']:.3g}</td></tr>"
                        for r in result["skip"]["depth"])
    time_rows = "".join(f"<tr><td>{r['dilations']}</td><td>{r['reach']:.3g}</td></tr>" for r in result["skip"]["time"])
    vocab = result["vocabulary"]
    vocab_rows = "".join(
        f"<tr><td>{r['vocab']:,}</td><td>{r['recurrent_ms']:.1f}</td>"
        f"<td>{r['full_ms']:.1f} ({r['full_share']:.0%})</td><td>{r['sampled_ms']:.1f}</td>"
        f"<td>x{r['step_speedup']:.2f}</td></tr>" for r in vocab["rows"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rnnlab demo</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 960px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>rnnlab demo: why RNNs are hard to train, measured</h1>
<h2>1-3. The gradient problem</h2>
<p>Each model reads the same {s['length']}-step adding-problem inputs. We measure how the gradient of the loss at
the last step, d cost_n / d h_t, changes as it travels back to earlier steps. For a tanh RNN every step multiplies it
by diag(tanh'(z_t)) W_hh, whose norm is at most sigma_max(W_hh): below 1 the gradient vanishes exponentially, above 1
it can explode. The LSTM's cell state is updated additively, c_t = f_t * c_(t-1) + i_t * g_t, so the gradient through
it is scaled by the forget gate f_t, not by W_hh: with f_t near 1 (forget-gate bias 3) it survives; with the default
init (f_t near 0.5) it vanishes too.</p>
<table><tr><th>model</th><th>verdict</th><th>gradient ratio over {s['length'] - 1} steps</th><th>gain per step</th>
<th>sigma_max(W_hh)</th><th>rho(W_hh)</th><th>full diagnostics</th></tr>{rows}</table>
<img alt="gradient flow" src="{_image(out / 'gradient_flow.png')}">
<p><b>Clipping.</b> On the sigma_max = 1.5 model the global gradient norm is {clip['grad_norm']:.3g}; one SGD step with
lr {clip['lr']} would move the weights by {clip['update_norm']:.3g}. Clipping the global norm to {clip['clip_norm']}
(Pascanu et al. 2013) keeps the direction and bounds the step at {clip['clipped_update_norm']:.3g}.</p>
<h2>4. A language model that trains</h2>
<p>A 2-layer LSTM ({s['lm_hidden_size']} units) trained with SGD and clipping on the vendored Penn Treebank for
{lm['steps']} steps; validation perplexity on the first {lm['valid_tokens']} validation tokens: {ppl}.
Run directory: <code>{esc(lm['run_dir'])}</code>.</p>
<img alt="language model training" src="{_image(out / 'lm_training.png')}">
<h2>5. A sample</h2><p><code>{esc(lm['sample'])}</code></p>
<h2>6. Dropout on the recurrent connection</h2>
<p>Dropping units of h_(t-1) with a fresh mask at every step (naive) fights the recurrent weights that every step
shares; variational dropout (Gal &amp; Ghahramani 2016) keeps one mask for all the steps of the window (white: kept,
black: dropped, p = {s['recurrent_dropout']}, one sequence). Below, for the LSTM of part 3 (forget bias 3) in training
mode: how strongly the last step's loss still depends on the first input, relative to the last input
(||d cost_n / d x_1|| / ||d cost_n / d x_n||, the median over mask draws). <code>experiments/recurrent_dropout.py</code>
trains with each kind on a long-range task (results in docs/RESULTS.md).</p>
<table><tr><th>recurrent dropout</th><th>reach of the first input</th><th>mask draws</th></tr>{dropout_rows}</table>
<img alt="dropout masks" src="{_image(out / result['dropout']['figure'])}">
<h2>7. Skip connections</h2>
<p>Depth multiplies too: the gradient reaching the bottom of a deep stack passes through every layer above it. Left: a
{s['deep_layers']}-layer tanh RNN at init, the gradient of the loss reaching each layer's outputs, without skip
connections, with residual ones (each layer's input added to its output) and with dense ones (the input reaches every
layer, every layer reaches the output; Graves 2013). Right: how far back in time the last step's gradient reaches in
a {len(s['dilations'])}-layer tanh stack (sigma_max(W_hh) = 0.9) with every layer stepping one step back, and with
dilations {list(s['dilations'])}: a layer with dilation d links h_t to h_(t-d), so the gradient crosses the same
distance in d times fewer multiplications (Chang et al. 2017).</p>
<table><tr><th>skip</th><th>gradient at the bottom layer / at the top</th></tr>{skip_rows}</table>
<table><tr><th>dilations</th><th>reach of the first input</th></tr>{time_rows}</table>
<img alt="skip connections" src="{_image(out / result['skip']['figure'])}">
<h2>8. The vocabulary problem</h2>
<p>A language model predicts one of V words at every step: the output layer's matrix product and softmax grow with V
while the recurrent part does not, so at large vocabularies the output layer is nearly the whole step. A sampled
softmax (Jean et al. 2015; <code>model.output = sampled</code>) scores each token's true word and
{vocab['samples']} candidates shared by the batch instead of all V words, with each logit corrected by its expected
count under the proposal. Evaluation stays exact: perplexity always comes from the full softmax. One training step of
a 2-layer LSTM ({s['lm_hidden_size']} units, batch 20, bptt 35), median of {s['vocab_repeats']} calls:</p>
<table><tr><th>V</th><th>embedding + LSTM, ms</th><th>full softmax, ms (share of the step)</th>
<th>sampled softmax, ms</th><th>step speed-up</th></tr>{vocab_rows}</table>
<img alt="vocabulary" src="{_image(out / vocab['figure'])}">
<p>Every number is in demo.json. Train the full Zaremba et al. configuration with <code>rnnlab train</code>.</p>
</body></html>
"""


def format_table(result: dict[str, Any]) -> str:
    """The compact terminal summary."""
    lines = [f"{'model':<36}{'verdict':<11}{'gradient ratio':>16}{'sigma_max':>11}"]
    for r in result["gradient"]:
        lines.append(f"{r['label']:<36}{r['verdict']:<11}{_fmt(r['ratio'], '.3g'):>16}{r['sigma_max']:>11.3f}")
    clip, lm = result["clipping"], result["language_model"]
    lines.append(f"clipping: update {clip['update_norm']:.3g} -> {clip['clipped_update_norm']:.3g} "
                 f"(global norm {clip['grad_norm']:.3g} clipped to {clip['clip_norm']})")
    lines.append("LM valid perplexity: " + " -> ".join(f"{p:.0f}" for p in lm["valid_ppl"]) + f" ({lm['steps']} steps)")
    lines.append(f"sample: {lm['sample']}")
    reach = ", ".join(f"{r['kind']} {r['reach']:.3g}" for r in result["dropout"]["rows"])
    lines.append(f"recurrent dropout {result['settings']['recurrent_dropout']}, reach of the first input: {reach}")
    depth = ", ".join(f"{r['skip']} {r['bottom_over_top']:.3g}" for r in result["skip"]["depth"])
    lines.append(f"{result['settings']['deep_layers']}-layer tanh stack, gradient bottom / top: {depth}")
    time = ", ".join(f"{r['dilations']} {r['reach']:.3g}" for r in result["skip"]["time"])
    lines.append(f"reach of the first input, dilations {time}")
    speedups = ", ".join(f"V {r['vocab']:,} x{r['step_speedup']:.2f}" for r in result["vocabulary"]["rows"])
    lines.append(f"sampled softmax (S = {result['vocabulary']['samples']}), training step speed-up: {speedups}")
    return "\n".join(lines)


__all__ = ["DemoSettings", "format_table", "run_demo"]
