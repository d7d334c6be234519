"""Data-parallel training as torchrun starts it (RANK / WORLD_SIZE / MASTER_ADDR in the environment), on the
CPU with gloo: two processes with half the columns each train the model one process trains with all of them."""

import json
import multiprocessing
import os
import socket
import time

import pytest
import torch
from torch.testing import assert_close

from rnnlab.training.checkpoint import LATEST, load_checkpoint
from rnnlab.training.metrics import read_metrics

from .conftest import TINY_MODEL

pytestmark = pytest.mark.slow

COMMON = [*TINY_MODEL, "train.epochs=2", "train.log_every=1", "train.checkpoint_every_minutes=0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, argv: list[str], out: str) -> None:
    """One torchrun-style process: the environment torchrun sets, then the command line."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"})
    torch.set_num_threads(1)
    from rnnlab.cli import main

    code = main(argv)
    with open(f"{out}.rank{rank}", "w") as handle:
        handle.write(str(code))


def _launch(argv: list[str], out, world: int = 2, timeout: float = 180) -> list[int]:
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_rank, args=(r, world, port, argv, str(out))) for r in range(world)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout)
        assert not p.is_alive(), "a rank hung"
    return [int(open(f"{out}.rank{r}").read()) for r in range(world)]


def _args(corpus, run, *extra):
    return ["train", "--data", str(corpus), "--run-dir", str(run), "--quiet",
            *[a for item in (*COMMON, *extra) for a in ("--set", item)]]


def _losses(run):
    return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"]


def test_two_processes_with_half_the_columns_each_train_the_one_process_model(tiny_corpus_dir, tmp_path):
    from rnnlab.cli import main

    assert main(_args(tiny_corpus_dir, tmp_path / "one")) == 0
    assert _launch(_args(tiny_corpus_dir, tmp_path / "two"), tmp_path / "codes") == [0, 0]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [s for s, _ in one] == [s for s, _ in two] and len(one) > 4
    assert_close(torch.tensor([x for _, x in two]), torch.tensor([x for _, x in one]), rtol=1e-5, atol=1e-6)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for name in a:
        assert_close(b[name], a[name], rtol=1e-4, atol=1e-6, msg=name)
    evals = [[(r["split"], r["tokens"], r["loss"]) for r in read_metrics(run / "metrics.jsonl")
              if r["event"] == "eval"] for run in (tmp_path / "one", tmp_path / "two")]
    assert [e[:2] for e in evals[0]] == [e[:2] for e in evals[1]], "evaluation covers every token once"
    assert_close(torch.tensor([e[2] for e in evals[1]]), torch.tensor([e[2] for e in evals[0]]), rtol=1e-5, atol=0)
    assert not list((tmp_path / "two").glob("*.rank*")) and (tmp_path / "two" / "config.toml").is_file()
    assert load_checkpoint(tmp_path / "two" / LATEST)["world_size"] == 2


def _weights(run):
    return load_checkpoint(run / LATEST)["model"]


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(tiny_corpus_dir, tmp_path):
    assert _launch(_args(tiny_corpus_dir, tmp_path / "whole", "train.max_steps=9"), tmp_path / "a") == [0, 0]
    assert _launch(_args(tiny_corpus_dir, tmp_path / "split", "train.max_steps=4"), tmp_path / "b") == [0, 0]
    resume = ["train", "--resume", str(tmp_path / "split"), "--quiet", "--set", "train.max_steps=9"]
    assert _launch(resume, tmp_path / "c") == [0, 0]
    assert _losses(tmp_path / "split") == _losses(tmp_path / "whole")
    for name, value in _weights(tmp_path / "whole").items():
        assert torch.equal(value, _weights(tmp_path / "split")[name]), name
    from rnnlab.cli import main

    # a changed world size is refused with one line
    assert main(["train", "--resume", str(tmp_path / "split"), "--quiet", "--set", "train.max_steps=12"]) == 2


def _dying_rank(rank: int, world: int, port: int, corpus: str, run: str, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"})
    torch.set_num_threads(1)
    from rnnlab.config import load_config
    from rnnlab.errors import RnnlabError
    from rnnlab.training.trainer import Observer, Trainer

    class Die(Observer):
        def on_step(self, step, tokens):
            if rank == 1 and step == 2:
                os._exit(3)  # a crashed or killed rank: no goodbye

    config = load_config(overrides=[f"data.path={corpus}", *COMMON, "train.epochs=50", "train.distributed_timeout=10"])
    started = time.monotonic()
    try:
        trainer = Trainer(config, run, observers=(Die(),) if rank == 1 else ())
        if rank == 1:
            trainer.observers = (Die(),)  # rank 1 is not the main rank: attach its observer by hand
        trainer.fit()
        message = "finished"
    except RnnlabError as exc:
        message = str(exc)
    with open(f"{out}.rank{rank}", "w") as handle:
        json.dump({"message": message, "seconds": time.monotonic() - started}, handle)


def test_a_rank_that_dies_makes_the_others_stop_with_one_line(tiny_corpus_dir, tmp_path):
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_dying_rank, args=(r, 2, port, str(tiny_corpus_dir), str(tmp_path / "run"),
                                                            str(tmp_path / "out"))) for r in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert not p.is_alive(), "a rank hung"
    assert processes[1].exitcode == 3
    report = json.loads(open(f"{tmp_path / 'out'}.rank0").read())
    assert "lost the other training processes" in report["message"] and "\n" not in report["message"]
    assert report["seconds"] < 60
