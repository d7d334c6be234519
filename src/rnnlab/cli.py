"""``rnnlab`` command line: argparse sub-commands that call into the library.

Every user error (a missing file, an unknown preset or key, a value out of range, a checkpoint
that does not load) ends as one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnlab import __version__
from rnnlab.config import (
    DEFAULT_PRESET,
    RESUMABLE_KEYS,
    Config,
    describe_keys,
    load_config,
    parse_overrides,
    preset_names,
    read_preset,
)
from rnnlab.data.corpus import BUILTIN_PREFIX
from rnnlab.errors import CheckpointError, ConfigError, DataError, RnnlabError
from rnnlab.io import strict_json

# Exit codes, as argparse and Unix tools use them: 2 for bad input (usage, config, data, checkpoint), 1 for a
# failure while running (divergence, disk full), 128 + the signal's number when a signal stopped training.
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(message)s", stream=sys.stderr, force=True)
    try:
        return args.handler(args)
    except (ConfigError, DataError, CheckpointError) as exc:
        print(f"rnnlab: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RnnlabError as exc:
        print(f"rnnlab: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # disk full, permission denied...: say which file, skip the traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"rnnlab: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("rnnlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) rather than usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rnnlab",
        description="Train recurrent language models (RNN, LSTM, GRU) effectively, and see why they train.",
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    keys = "\n".join(f"  {line}" for line in describe_keys())
    train = commands.add_parser(
        "train", help="train a language model into a run directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Train a language model. With no arguments: the {DEFAULT_PRESET} preset on the "
                    "vendored Penn Treebank, into a new directory under runs/.",
        epilog=f"config keys for --set (section.key = default: meaning):\n{keys}",
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument("--preset", metavar="NAME", help=f"a shipped preset (default {DEFAULT_PRESET}; "
                        "see `rnnlab presets`)")
    source.add_argument("--config", metavar="FILE", help="a TOML config file ([data], [model], [train] "
                        "tables; optional top-level preset = NAME to start from)")
    train.add_argument("--data", metavar="DIR", help="corpus directory (train.txt, valid.txt, test.txt) "
                       "or one text file; sets data.path")
    train.add_argument("--run-dir", metavar="DIR", help="where checkpoints and metrics go "
                       "(default runs/NAME-DATE-TIME); one holding checkpoints is refused (--resume it, or "
                       "--overwrite), one whose run stopped before its first save is reused")
    train.add_argument("--overwrite", action="store_true",
                       help="start over in --run-dir, deleting the checkpoints and metrics of the run there")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest.pt; "
                       f"--set may then change only {', '.join(sorted(RESUMABLE_KEYS))}")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one config key (repeatable), e.g. --set train.max_steps=50")
    train.add_argument("--quiet", action="store_true", help="no progress bar; print only the final result")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("eval", help="exact perplexity of a checkpoint on a split")
    evaluate.add_argument("--checkpoint", required=True, metavar="PATH",
                          help="a .pt checkpoint, or a run directory (its best.pt)")
    evaluate.add_argument("--data", metavar="DIR", help="corpus to evaluate on (default: the one the "
                          "checkpoint was trained on)")
    evaluate.add_argument("--split", choices=("valid", "test"), default="valid", help="split (default valid)")
    evaluate.add_argument("--batch-size", type=_positive_int, metavar="N",
                          help="parallel streams (default: the run's train.eval_batch_size)")
    evaluate.add_argument("--mc-samples", type=_positive_int, default=0, metavar="N",
                          help="Monte-Carlo dropout: average the predictive distributions of N dropout samples, "
                               "each drawing its masks per window as training does, seeded by the run's train.seed "
                               "(Gal & Ghahramani 2016; default 0: dropout off)")
    evaluate.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object (loss, ppl, tokens, ...)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=cmd_eval)

    generate = commands.add_parser("generate", help="sample text from a checkpoint")
    generate.add_argument("--checkpoint", required=True, metavar="PATH",
                          help="a .pt checkpoint, or a run directory (its best.pt)")
    generate.add_argument("--tokens", type=_positive_int, default=50, metavar="N",
                          help="tokens to sample (default 50)")
    generate.add_argument("--temperature", type=_positive_float, default=1.0, metavar="T",
                          help="> 0; below 1 sharpens, above 1 flattens (default 1.0)")
    generate.add_argument("--top-k", type=_non_negative_int, default=0, metavar="K",
                          help="sample among the K most likely tokens only (default 0: all)")
    generate.add_argument("--seed", type=int, metavar="S", help="seed for reproducible samples")
    generate.add_argument("--prompt", default="", metavar="TEXT", help="text to continue (default: a line start)")
    generate.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    generate.set_defaults(handler=cmd_generate)

    diagnose = commands.add_parser(
        "diagnose", help="measure gradient flow, Jacobians, W_hh spectra and saturation; write a report",
        description="Measure the gradient problem on a model (a trained checkpoint, or a freshly initialised one "
                    "from a preset or config) over a held-out probe batch, and write diagnostics.json, "
                    "gradient_flow.png, jacobian.png, spectrum.png, saturation.png and report.html to --out.")
    model_source = diagnose.add_mutually_exclusive_group()
    model_source.add_argument("--checkpoint", metavar="PATH", help="a .pt checkpoint, or a run directory (its best.pt)")
    model_source.add_argument("--preset", metavar="NAME", help="an untrained model from a preset")
    model_source.add_argument("--config", metavar="FILE", help="an untrained model from a TOML config file")
    diagnose.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                          help="override one config key (repeatable), e.g. --set model.recurrent_scale=1.5")
    diagnose.add_argument("--data", metavar="DIR", help="corpus for the probe batch (sets data.path)")
    diagnose.add_argument("--out", required=True, metavar="DIR", help="folder for the report files")
    diagnose.add_argument("--batch", type=_positive_int, metavar="N",
                          help="probe sequences (default diagnostics.batch)")
    diagnose.add_argument("--steps", "--length", dest="length", type=_positive_int, metavar="N",
                          help="probe steps (default diagnostics.length: train.bptt for language models, task.length "
                               "for tasks)")
    diagnose.add_argument("--jacobian-sequences", type=_positive_int, default=4, metavar="N",
                          help="sequences whose step Jacobians are measured (default 4)")
    diagnose.add_argument("--jacobian-method", choices=("auto", "dense", "lanczos"), default="auto",
                          help="sigma_max of each step Jacobian: dense (form it, full SVD), lanczos (Jacobian-vector "
                               "products, never the matrix) or auto (default: dense up to 512 state units)")
    diagnose.add_argument("--eigenvalues", action="store_true",
                          help="eigenvalues of every W_hh block, however large (default: blocks up to 768 units)")
    diagnose.add_argument("--quiet", action="store_true", help="no progress bar")
    diagnose.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    diagnose.set_defaults(handler=cmd_diagnose)

    bench = commands.add_parser(
        "bench", help="rnnlab's training tokens/s against the plain PyTorch loop on the same config",
        description="Train the same config with rnnlab's Trainer and with the loop a user writes instead (PyTorch's "
                    "word_language_model example: nn.LSTM, manual SGD, clipping, loss.item() every step), on the "
                    "same data and device, alternating rounds in one process; print tokens/s of both, the ratio, "
                    "its spread over rounds and the peak memory of each. Dropout variants, output layers and skip "
                    "connections are benchmarked by passing their keys with --set.")
    bench_source = bench.add_mutually_exclusive_group()
    bench_source.add_argument("--preset", metavar="NAME", help="a preset (default ptb-small)")
    bench_source.add_argument("--config", metavar="FILE", help="a TOML config file")
    bench.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one config key (repeatable), e.g. --set regularization.recurrent_dropout=0.3")
    bench.add_argument("--data", metavar="DIR", help="corpus (sets data.path)")
    bench.add_argument("--steps", type=_positive_int, metavar="N",
                       help="timed steps per side and round (default: 60 up to 256 units, 15 above)")
    bench.add_argument("--rounds", type=_positive_int, default=3, metavar="R", help="alternating rounds (default 3)")
    bench.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    bench.set_defaults(handler=cmd_bench)

    demo = commands.add_parser(
        "demo", help="the gradient problem and its fixes, measured (about 95 s on 2 CPU cores)",
        description="Tell the story of effective RNN training with measurements: a tanh RNN whose gradient "
                    "vanishes (sigma_max 0.9) and one whose gradient explodes (1.5) with clipping bounding the "
                    "update, an LSTM keeping its gradient, a short LSTM language model on Penn Treebank, a "
                    "sample, naive vs variational dropout on the recurrent connection, skip connections "
                    "through depth and dilation through time, and where a training step's time goes as the "
                    "vocabulary grows (full vs sampled softmax). Writes report.html, demo.json, plots and "
                    "per-model diagnostics to --out.")
    demo.add_argument("--out", metavar="DIR", help="output folder (default runs/demo-DATE-TIME)")
    demo.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds: checks the pipeline only")
    demo.add_argument("--quiet", action="store_true", help="print only the final table and the report path")
    demo.set_defaults(handler=cmd_demo)

    plot = commands.add_parser("plot", help="compare runs: training loss, gradient norm, validation loss")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (each with metrics.jsonl)")
    plot.add_argument("--out", required=True, metavar="FILE", help="the figure to write (.png, .pdf, .svg)")
    plot.add_argument("--labels", nargs="+", metavar="LABEL", help="one legend label per run (default: folder names)")
    plot.set_defaults(handler=cmd_plot)

    presets = commands.add_parser("presets", help="list the shipped presets, one line each")
    presets.set_defaults(handler=cmd_presets)
    return parser


# ---------------------------------------------------------------- commands


def cmd_presets(args: argparse.Namespace) -> int:
    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {read_preset(name).get('description', '')}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from rnnlab.training.checkpoint import LATEST, load_checkpoint
    from rnnlab.training.workloads import check_corpus_options

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # started by torchrun
    rank = int(os.environ.get("RANK", "0")) if distributed else 0

    if args.resume:
        if args.preset or args.config:
            raise ConfigError("--resume takes its config from the run; drop --preset/--config")
        if args.run_dir:
            raise ConfigError("--resume RUN_DIR names the run directory; drop --run-dir")
        run_dir = Path(args.resume)
        payload = load_checkpoint(run_dir / LATEST) if run_dir.is_dir() else None
        if payload is None:
            raise ConfigError(f"--resume expects a run directory holding {LATEST}, got {run_dir}")
        overrides = parse_overrides(args.overrides)
        if args.data:
            overrides["data.path"] = args.data
        refused = sorted(set(overrides) - RESUMABLE_KEYS)
        if refused:
            raise ConfigError(f"a resumed run cannot change {', '.join(refused)}; it may change only "
                              f"{', '.join(sorted(RESUMABLE_KEYS))}")
        config = Config.from_dict(payload["config"], source="checkpoint config").with_overrides(overrides)
        check_corpus_options(config, data=args.data)
        del payload
    else:
        extra = [f"data.path={args.data}"] if args.data else []
        config = load_config(args.preset, args.config, [*args.overrides, *extra])
        check_corpus_options(config, data=args.data)
        name = args.preset or (Path(args.config).stem if args.config else None)
        if distributed and not args.run_dir:
            raise ConfigError("under torchrun every process must name the same run directory: give --run-dir")
        # Under torchrun rank 0 alone prepares the directory (the others only read checkpoints from it).
        run_dir = _new_run_dir(args.run_dir, name, overwrite=args.overwrite) if rank == 0 else Path(args.run_dir)
    config = _absolute_data_path(config)

    quiet = args.quiet or rank != 0  # one rank speaks for all
    progress = ProgressBar(enabled=not quiet)
    try:
        return _train(config, run_dir, progress, quiet, resume=bool(args.resume))
    finally:
        from rnnlab.training.distributed import shutdown

        shutdown()


def _train(config: Config, run_dir: Path, progress: ProgressBar, quiet: bool, resume: bool) -> int:
    from rnnlab.training.trainer import Trainer

    trainer = Trainer(config, run_dir, observers=(progress,), resume=resume)
    if not quiet:
        print(f"run directory: {run_dir}", file=sys.stderr)
    stopper = _StopOnSignal(trainer)
    previous = {signum: signal.signal(signum, stopper) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = trainer.fit()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if result.stopped_by == "interrupted":
        if not trainer.ranks.is_main:
            return 128 + (stopper.signum or signal.SIGTERM)
        name = signal.Signals(stopper.signum).name if stopper.signum else "a stop request"
        print(f"stopped by {name} at step {result.steps}; latest.pt is saved. Continue with: "
              f"rnnlab train --resume {run_dir}", file=sys.stderr)
        return 128 + (stopper.signum or signal.SIGINT)  # as shells report a signal: 130 SIGINT, 143 SIGTERM
    if not trainer.ranks.is_main:
        return 0
    print(f"{result.summary}; stopped by {result.stopped_by} after {result.steps} steps")
    print(f"best checkpoint: {result.best_checkpoint}")
    print(f"metrics: {result.metrics}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rnnlab.training.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint_path
    from rnnlab.training.trainer import resolve_device
    from rnnlab.training.workloads import check_corpus_options, workload_class

    path = resolve_checkpoint_path(args.checkpoint)
    model, config, vocab = model_from_checkpoint(load_checkpoint(path))
    check_corpus_options(config, data=args.data, batch_size=args.batch_size, mc_samples=args.mc_samples)
    if args.data:
        config = config.with_overrides({"data.path": args.data})
    model.to(resolve_device(args.device))
    bar = _eval_bar(args.split, enabled=not (args.quiet or args.json))
    metrics, line = workload_class(config).evaluate_checkpoint(
        model, config, vocab, args.split, batch_size=args.batch_size,
        on_window=bar.update_to if bar is not None else None, mc_samples=args.mc_samples)
    if bar is not None:
        bar.close()
    print(strict_json({"checkpoint": str(path), "split": args.split, **metrics}) if args.json else line)
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    import torch

    from rnnlab.diagnostics import diagnose
    from rnnlab.diagnostics.report import write_report
    from rnnlab.training.checkpoint import load_checkpoint, resolve_checkpoint_path
    from rnnlab.training.trainer import resolve_device
    from rnnlab.training.workloads import build_workload, check_corpus_options

    device = resolve_device(args.device)
    extra = {"data.path": args.data} if args.data else {}
    if args.checkpoint:
        path = resolve_checkpoint_path(args.checkpoint)
        payload = load_checkpoint(path)
        config = Config.from_dict(payload["config"], source="checkpoint config")
        config = config.with_overrides({**parse_overrides(args.overrides), **extra})
        check_corpus_options(config, data=args.data)
        workload = build_workload(config, device)
        workload.check_checkpoint(payload, str(path))
        try:
            workload.model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise ConfigError(f"the overrides change the model of {path}: {str(exc).splitlines()[0]}") from None
        title = f"rnnlab diagnostics: {path}"
    else:
        config = load_config(args.preset, args.config, args.overrides)
        config = config.with_overrides(extra) if extra else config
        check_corpus_options(config, data=args.data)
        torch.manual_seed(config.train.seed)
        workload = build_workload(config, device)
        title = f"rnnlab diagnostics: untrained {args.preset or args.config or DEFAULT_PRESET}"
    inputs, targets = workload.probe_batch(args.batch or config.diagnostics.batch,
                                           args.length or config.diagnostics.length)
    bar = _DiagnoseBar(workload.model.rnn.num_layers, enabled=not args.quiet)
    try:
        diagnosis = diagnose(workload.model, inputs, targets, jacobian_sequences=args.jacobian_sequences,
                             jacobian_method=args.jacobian_method, eigenvalues=args.eigenvalues, progress=bar)
        bar("report")
        report = write_report(diagnosis, args.out, title)
    finally:
        bar.close()
    for entry in diagnosis["layers"]:
        print(f"layer {entry['layer']}: {entry['verdict']['verdict']}: {entry['verdict']['reason']}")
    print(f"report: {report}")
    print(f"diagnosed in {bar.elapsed:.1f} s; peak memory {_peak_memory_gb():.2f} GB (resident set of this process)")
    return 0


class _DiagnoseBar:
    """The progress of ``rnnlab diagnose``: one tick per stage (per layer where it runs per layer), and the
    Jacobians measured so far within a layer."""

    PER_LAYER = ("jacobians", "spectra")

    def __init__(self, layers: int, enabled: bool) -> None:
        self.started = time.perf_counter()
        self.elapsed = 0.0
        self.current: tuple[str, int] | None = None
        self.bar: Any = None
        self.plain = enabled and not _terminal()  # one line per stage instead of a redrawn bar
        if enabled and not self.plain:
            from tqdm import tqdm

            # probe, gradient flow, saturation, report, and two per-layer stages
            self.bar = tqdm(total=4 + 2 * layers, unit="stage", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, stage: str, layer: int = 0, done: int = 0, total: int = 1) -> None:
        if self.plain and (stage, layer) != self.current:
            self.current = (stage, layer)
            print(f"diagnose: {stage}" + (f" layer {layer}" if stage in self.PER_LAYER else ""), file=sys.stderr,
                  flush=True)
        if self.bar is None:
            return
        if (stage, layer) != self.current:
            if self.current is not None:
                self.bar.update(1)
            self.current = (stage, layer)
            self.bar.set_description_str(f"{stage} layer {layer}" if stage in self.PER_LAYER else stage)
            self.bar.set_postfix_str("")
        if stage == "jacobians" and total > 1:
            self.bar.set_postfix_str(f"{done}/{total} step Jacobians")

    def close(self) -> None:
        self.elapsed = time.perf_counter() - self.started
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()
            self.bar = None


def _peak_memory_gb() -> float:
    """The process's peak resident set (ru_maxrss: KiB on Linux, bytes on macOS), in GB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


def cmd_demo(args: argparse.Namespace) -> int:
    from rnnlab.demo import DemoSettings, format_table, run_demo

    out = _new_run_dir(args.out, "demo")
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    progress = ProgressBar(enabled=not args.quiet)
    result = run_demo(out, settings, say=say, observers=(progress,))
    print(format_table(result))
    print(f"report: {result['report']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from rnnlab.benchmark import bench
    from rnnlab.data.corpus import load_corpus
    from rnnlab.training.trainer import resolve_device
    from rnnlab.training.workloads import workload_class

    extra = [f"data.path={args.data}"] if args.data else []
    config = load_config(args.preset, args.config, [*args.overrides, *extra])
    if not workload_class(config).reads_corpus:
        raise ConfigError(f"bench compares language-model training loops; {config.task.name} is a synthetic task")
    device = resolve_device(args.device)
    full = load_corpus(config.data)
    # Short held-out splits: the end-of-run evaluation of each rnnlab run is not timed, only waited for.
    corpus = full.with_short_eval(500)
    steps = args.steps or (60 if config.model.hidden_size <= 256 else 15)
    m, t = config.model, config.train
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    say = (lambda line: None) if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    say(f"torch {torch.__version__}, {where}; {m.num_layers}x{m.hidden_size} {m.cell}, bptt {t.bptt}, batch "
        f"{t.batch_size}, vocabulary {len(full.vocab)}; {steps} timed steps per side, {args.rounds} rounds")

    def on_round(index: int, speeds: dict[str, float]) -> None:
        say(f"round {index}: rnnlab {speeds['rnnlab']:.0f} tokens/s, baseline {speeds['baseline']:.0f} tokens/s, "
            f"ratio {speeds['rnnlab'] / speeds['baseline']:.3f}")

    try:
        result = bench(config, corpus, device, steps, args.rounds, on_round)
    except ValueError as exc:
        raise ConfigError(f"bench: {exc}") from None
    report = result.to_dict()
    if args.json:
        print(strict_json(report))
        return 0
    speed, spread, peak = report["tokens_per_s"], report["ratio_spread"], report["peak_memory_bytes"]
    kind = "CUDA allocator peak" if device.type == "cuda" else "resident set, sampled"
    print(f"rnnlab   {speed['rnnlab']:10.0f} tokens/s (median of {args.rounds} rounds)   peak memory "
          f"{peak['rnnlab'] / 1e9:.2f} GB")
    print(f"baseline {speed['baseline']:10.0f} tokens/s                        peak memory "
          f"{peak['baseline'] / 1e9:.2f} GB ({kind})")
    print(f"ratio rnnlab / baseline {report['ratio']:.3f} (rounds {spread[0]:.3f} .. {spread[1]:.3f})")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from rnnlab.plots import plot_runs

    if args.labels and len(args.labels) != len(args.runs):
        raise ConfigError(f"--labels gives {len(args.labels)} labels for {len(args.runs)} runs")
    print(plot_runs(args.runs, args.out, args.labels))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from rnnlab.data.tokenizers import get_tokenizer
    from rnnlab.generation import generate_stream
    from rnnlab.training.checkpoint import load_checkpoint, model_from_checkpoint
    from rnnlab.training.trainer import resolve_device
    from rnnlab.training.workloads import workload_class

    model, config, vocab = model_from_checkpoint(load_checkpoint(args.checkpoint))
    if not workload_class(config).reads_corpus:
        raise ConfigError(f"generate needs a language-model checkpoint; {args.checkpoint} was trained on the "
                          f"{config.task.name} task")
    model.to(resolve_device(args.device))
    tokenizer = get_tokenizer(config.data.level, vocab.sentencepiece)  # a subword model brings its own
    # Streamed: the text appears as it is sampled, so a long --tokens shows output at once.
    for piece in generate_stream(model, vocab, tokenizer, prompt=args.prompt, tokens=args.tokens,
                                 temperature=args.temperature, top_k=args.top_k, seed=args.seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


# ---------------------------------------------------------------- helpers


def _terminal() -> bool:
    """Progress bars redraw with carriage returns: only for a terminal. A log, CI or `| tee` gets plain lines."""
    return sys.stderr.isatty()


class ProgressBar:
    """The CLI's view of training: on a terminal a tqdm bar with the latest train record and eval lines above it;
    elsewhere one plain line per train record (train.log_every) and per evaluation."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.terminal = _terminal()
        self.bar: Any = None
        self.total = 0

    def on_start(self, total_steps: int, done_steps: int) -> None:
        self.total = total_steps
        if self.enabled and self.terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=done_steps, unit="step", dynamic_ncols=True,
                            file=sys.stderr)

    def on_step(self, step: int, tokens: int) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_record(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if record["event"] == "train":
            ppl = f" ppl {record['ppl']:.1f}" if "ppl" in record else ""
            # The exact loss, or a sampled / NCE one under its own name (it is no perplexity).
            name = next(key for key in ("loss", "sampled_loss", "nce_loss") if key in record)
            line = (f"ep {record['epoch']} {name.replace('_', ' ')} {record[name]:.4g}{ppl} lr {record['lr']:.3g} "
                    f"gnorm {record['grad_norm']:.3g} {record['tokens_per_s']:.0f} tok/s")
            if self.bar is not None:
                self.bar.set_postfix_str(line, refresh=False)
            else:
                print(f"step {record['step']}/{self.total} {line}", file=sys.stderr, flush=True)
        elif record["event"] in ("eval", "skipped"):
            if record["event"] == "eval":
                text = f"epoch {record['epoch']} step {record['step']}: {record['split']} {_headline(record)}"
            else:
                text = (f"step {record['step']}: {record['skipped']} step(s) skipped since the last record, non-finite "
                        f"loss or gradient in {', '.join(record['nonfinite'][:3])} ({record['in_a_row']} in a row "
                        f"from step {record['first']})")
            if self.bar is not None:
                self.bar.set_description_str("")
                self.bar.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr, flush=True)

    def on_eval_window(self, split: str, done: int, total: int) -> None:
        if self.bar is not None and (done == 1 or done == total or done % 20 == 0):
            self.bar.set_description_str(f"{split} {done}/{total}")

    def on_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _headline(record: dict[str, Any]) -> str:
    """The number that matters in an eval record: perplexity for language models, the task's metric otherwise."""
    if "ppl" in record:
        return f"ppl {record['ppl']:.2f} ({record['tokens']} tokens)"
    pairs = [f"{key[len('baseline_'):]} {record[key[len('baseline_'):]]:.4f} (not learned: {record[key]:.4f})"
             for key in record if key.startswith("baseline_")]
    return ", ".join(pairs) or f"loss {record['loss']:.4f}"


def _eval_bar(split: str, enabled: bool) -> Any:
    if not (enabled and _terminal()):
        return None
    from tqdm import tqdm

    bar = tqdm(desc=split, unit="window", file=sys.stderr, dynamic_ncols=True)

    def update_to(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    bar.update_to = update_to
    return bar


class _StopOnSignal:
    """SIGINT (Ctrl-C) and SIGTERM (schedulers, timeout, docker stop, Kubernetes): the first asks the trainer to stop
    after the current step and save latest.pt; a second one ends the process at once, unsaved."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # the second signal: the default action, now
            signal.signal(signum, signal.SIG_DFL)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        self.trainer.request_stop()
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving latest.pt (send it again to "
              "end at once, unsaved)", file=sys.stderr)


RUN_FILES = ("config.toml", "metrics.jsonl", "tokenizer.model", "tensorboard")  # what a run writes besides *.pt


def _new_run_dir(requested: str | None, name: str | None, overwrite: bool = False) -> Path:
    """The run directory of a new run. An existing one is reused when its run never saved a checkpoint (it failed or
    was killed first: nothing to resume; its config and metrics move to previous-DATE-TIME/); one with checkpoints
    only with ``overwrite``, which deletes them; one holding anything else never (it may not be a run directory)."""
    if requested:
        run_dir = Path(requested)
        if not run_dir.exists() or not any(run_dir.iterdir()):
            return run_dir
        entries = [p for p in run_dir.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))]
        checkpoints = [p for p in entries if p.suffix == ".pt"]
        foreign = [p.name for p in entries
                   if p.suffix != ".pt" and p.name not in RUN_FILES and not p.name.startswith("previous-")]
        if foreign:
            raise ConfigError(f"{run_dir} holds files that are not an rnnlab run's ({', '.join(sorted(foreign)[:3])}); "
                              "choose another --run-dir")
        if checkpoints and not overwrite:
            raise ConfigError(f"{run_dir} holds a run with checkpoints; continue it with --resume {run_dir}, start "
                              "over with --overwrite (deletes them), or choose another --run-dir")
        if checkpoints:  # --overwrite: the user asked for them to go
            for entry in entries:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            logging.getLogger(__name__).info("starting over in %s (--overwrite)", run_dir)
        else:  # a run that never saved: its records stay, moved aside
            kept = run_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
            kept.mkdir()
            for entry in entries:
                if not entry.name.startswith("previous-"):
                    entry.rename(kept / entry.name)
            logging.getLogger(__name__).info("reusing %s: its run stopped before its first checkpoint (its files "
                                             "are in %s)", run_dir, kept)
        return run_dir
    stem = f"runs/{name or DEFAULT_PRESET}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, n = Path(stem), 1
    while run_dir.exists():
        n += 1
        run_dir = Path(f"{stem}-{n}")
    return run_dir


def _absolute_data_path(config: Config) -> Config:
    """Store the corpus path absolutely so eval and resume work from any directory."""
    path = config.data.path
    if path.startswith(BUILTIN_PREFIX):
        return config
    return config.with_overrides({"data.path": str(Path(path).expanduser().resolve())})


def _positive_int(text: str) -> int:
    value = _parse(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _parse(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = _parse(float, text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _parse(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
