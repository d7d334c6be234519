"""Output layers for large vocabularies: sampled softmax, NCE, adaptive softmax, auto; exact evaluation."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from rnnlab.cli import main
from rnnlab.config import load_config
from rnnlab.errors import ConfigError
from rnnlab.models import RNNLanguageModel
from rnnlab.nn.output import (
    IGNORE_INDEX,
    SAMPLED_PAYS_FROM,
    AdaptiveSoftmax,
    CandidateSampler,
    FullSoftmax,
    NCELoss,
    SampledSoftmax,
    frequency_cutoffs,
    make_output_layer,
    nce_loss,
    resolve_output_kind,
    sampled_softmax_loss,
)
from rnnlab.training.checkpoint import LATEST, load_checkpoint
from rnnlab.training.metrics import read_metrics
from rnnlab.training.trainer import Trainer

from .conftest import TINY_MODEL

V, H, N = 13, 6, 9
ZIPF = [round(1000 / (rank + 1)) for rank in range(V)]


def _inputs(dtype=torch.float64):
    hidden = torch.randn(N, H, dtype=dtype, requires_grad=True)
    targets = torch.randint(V, (N,))
    return hidden, targets


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def test_every_class_a_candidate_once_without_correction_is_the_full_softmax():
    """S = V without replacement takes every id once with expected count 1 (no correction): the sampled loss
    is then the full cross-entropy, value and gradients."""
    hidden, targets = _inputs()
    layer = make_output_layer("sampled", H, V, num_samples=V).double().train()
    targets[0] = IGNORE_INDEX  # an unscored token is skipped alike
    out = layer(hidden, targets)
    full = F.cross_entropy(F.linear(hidden, layer.weight, layer.bias), targets, reduction="sum")
    assert_close(out.loss, full)
    assert int(out.tokens) == N - 1
    for ours, ref in zip(_grads(out.loss, hidden, layer.weight, layer.bias),
                         _grads(full, hidden, layer.weight, layer.bias)):
        assert_close(ours, ref)


def test_sampled_and_nce_losses_pass_gradcheck_with_fixed_candidates():
    hidden, targets = _inputs()
    weight = torch.randn(V, H, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(V, dtype=torch.float64, requires_grad=True)
    candidates = torch.tensor([0, 3, 5, int(targets[1]), 11])  # one accidental hit at least
    log_counts = torch.randn(5, dtype=torch.float64)
    log_count_targets = torch.randn(N, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda h, w, b: sampled_softmax_loss(h, targets, w, b, candidates, log_counts, log_count_targets),
        (hidden, weight, bias))
    assert torch.autograd.gradcheck(
        lambda h, w, b: nce_loss(h, targets, w, b, candidates, log_counts, log_count_targets), (hidden, weight, bias))


def test_sampled_softmax_matches_its_definition_and_removes_accidental_hits():
    hidden, targets = _inputs()
    hidden = hidden.detach()
    weight, bias = torch.randn(V, H, dtype=torch.float64), torch.randn(V, dtype=torch.float64)
    candidates = torch.tensor([1, 2, 4, 7])
    targets[:3] = torch.tensor([2, 7, 9])  # two accidental hits, one miss
    log_q = torch.randn(V, dtype=torch.float64)
    loss = sampled_softmax_loss(hidden, targets, weight, bias, candidates, log_q[candidates], log_q[targets])
    expected = 0.0
    for i in range(N):
        scores = {int(k): float(hidden[i] @ weight[k] + bias[k] - log_q[k]) for k in candidates if k != targets[i]}
        true = float(hidden[i] @ weight[targets[i]] + bias[targets[i]] - log_q[targets[i]])
        expected += math.log(math.exp(true) + sum(math.exp(s) for s in scores.values())) - true
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_nce_loss_matches_its_definition():
    hidden, targets = _inputs()
    hidden = hidden.detach()
    weight, bias = torch.randn(V, H, dtype=torch.float64), torch.randn(V, dtype=torch.float64)
    noise = torch.tensor([0, 0, 3, 8])  # drawn with replacement: repeats count twice
    log_count = torch.log(torch.rand(V, dtype=torch.float64) * 4)

    def sigmoid(x):
        return 1 / (1 + math.exp(-x))

    expected = 0.0
    for i in range(N):
        t = int(targets[i])
        expected -= math.log(sigmoid(float(hidden[i] @ weight[t] + bias[t] - log_count[t])))
        for k in noise.tolist():
            expected -= math.log(1 - sigmoid(float(hidden[i] @ weight[k] + bias[k] - log_count[k])))
    loss = nce_loss(hidden, targets, weight, bias, noise, log_count[noise], log_count[targets])
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_log_uniform_sampler_has_the_zipfian_proposal_and_draws_from_it():
    sampler = CandidateSampler("log_uniform", 50)
    ranks = torch.arange(50, dtype=torch.float64)
    assert_close(sampler.probs, (torch.log(ranks + 2) - torch.log(ranks + 1)) / math.log(51))
    assert float(sampler.probs.sum()) == pytest.approx(1.0)
    torch.manual_seed(1)
    draw = sampler.draw(200_000, replacement=True)
    assert draw.tries == 200_000 and draw.ids.min() >= 0 and draw.ids.max() < 50
    frequencies = torch.bincount(draw.ids, minlength=50).double() / 200_000
    assert_close(frequencies, sampler.probs, atol=4e-3, rtol=0)


def test_unigram_sampler_follows_the_counts_to_a_power():
    sampler = CandidateSampler("unigram", 4, counts=[81, 16, 1, 0], power=0.5)
    assert_close(sampler.probs, torch.tensor([9.0, 4.0, 1.0, 0.0], dtype=torch.float64) / 14)
    torch.manual_seed(2)
    draw = sampler.draw(50_000, replacement=True)
    assert 3 not in draw.ids.tolist(), "a zero count is never proposed"
    with pytest.raises(ValueError, match="counts"):
        CandidateSampler("unigram", 4, counts=[1, 2])


def test_unique_draws_are_distinct_and_their_expected_counts_are_inclusion_probabilities():
    sampler = CandidateSampler("log_uniform", 20)
    torch.manual_seed(3)
    included, predicted, runs = torch.zeros(20, dtype=torch.float64), torch.zeros(20, dtype=torch.float64), 3000
    for _ in range(runs):
        draw = sampler.draw(5, replacement=False)
        assert draw.ids.numel() == 5 and draw.ids.unique().numel() == 5 and not draw.replacement
        included[draw.ids] += 1
        predicted += sampler.log_expected_count(torch.arange(20), draw).double().exp()
    # TensorFlow's estimate 1 - (1 - Q)^tries, averaged over draws, is each id's chance of being drawn
    assert_close(predicted / runs, included / runs, atol=0.03, rtol=0)
    with_replacement = sampler.draw(7, replacement=True)
    assert_close(sampler.log_expected_count(torch.arange(3), with_replacement),
                 (7 * sampler.probs[:3]).log().float())
    every = sampler.draw(20, replacement=False)
    assert every.ids.tolist() == list(range(20)) and math.isinf(every.tries)
    assert sampler.log_expected_count(torch.arange(20), every).abs().sum() == 0


@pytest.mark.parametrize("kind", ["sampled", "nce", "adaptive"])
def test_every_kind_evaluates_exactly_with_a_normalised_distribution(kind):
    torch.manual_seed(4)
    layer = make_output_layer(kind, 16, V, counts=ZIPF, num_samples=4, cutoffs=[4, 8], div_value=2.0)
    hidden = torch.randn(N, 16)
    targets = torch.randint(V, (N,))
    targets[2] = IGNORE_INDEX
    log_probs = layer.log_probs(hidden)
    assert_close(log_probs.exp().sum(-1), torch.ones(N))
    exact = layer.exact_loss(hidden, targets)
    scored = targets != IGNORE_INDEX
    assert_close(exact.loss, -log_probs[scored].gather(1, targets[scored, None]).sum())
    assert int(exact.tokens) == N - 1
    layer.eval()
    assert_close(layer(hidden, targets).loss, exact.loss)  # eval mode trains nothing: the exact loss
    if kind != "adaptive":
        full = FullSoftmax(16, V)
        full.load_state_dict(layer.state_dict())  # a sampled model's weights are a full softmax's
        assert_close(full.exact_loss(hidden, targets).loss, exact.loss)


def test_adaptive_is_torchs_module_on_frequency_cutoffs():
    layer = make_output_layer("adaptive", 16, V, counts=ZIPF, div_value=2.0)
    assert isinstance(layer, AdaptiveSoftmax) and isinstance(layer.adaptive, torch.nn.AdaptiveLogSoftmaxWithLoss)
    assert layer.cutoffs == frequency_cutoffs(ZIPF)
    hidden, targets = torch.randn(N, 16), torch.randint(V, (N,))
    torch_out = layer.adaptive(hidden, targets)
    assert_close(layer(hidden, targets).loss, torch_out.loss * N)
    with pytest.raises(ConfigError, match="cutoffs"):
        make_output_layer("adaptive", 16, V, cutoffs=[4, 13])
    with pytest.raises(ConfigError, match="0 units"):
        make_output_layer("adaptive", 8, V, cutoffs=[4, 8], div_value=4.0)


def test_frequency_cutoffs_cover_the_tokens():
    counts = [50, 20, 10, 8, 5, 3, 2, 1, 1]  # 100 tokens
    assert frequency_cutoffs(counts) == [3, 6]  # 80 tokens in the head; 96 (>= 95) by the end of the first tail
    assert frequency_cutoffs([5, 5]) == [1]
    cutoffs = frequency_cutoffs([round(1e6 / (r + 1)) for r in range(10_000)])
    assert 0 < cutoffs[0] < cutoffs[1] < 10_000


def test_auto_picks_by_vocabulary_size_and_device():
    for device, threshold in SAMPLED_PAYS_FROM.items():
        assert resolve_output_kind("auto", threshold - 1, device) == "softmax"
        assert resolve_output_kind("auto", threshold, device) == "sampled"
    assert resolve_output_kind("nce", 10, "cpu") == "nce"
    big = make_output_layer("auto", 4, SAMPLED_PAYS_FROM["cpu"], device_type="cpu")
    assert type(big) is SampledSoftmax and big.objective == "sampled_loss"
    assert type(make_output_layer("auto", 4, 50, device_type="cpu")) is FullSoftmax


def _train_toy(layer, contexts, targets, steps=500):
    """A table of context embeddings into ``layer``, trained by Adam; the exact cross-entropy at the end."""
    embed = torch.nn.Embedding(contexts.max() + 1, 16)
    params = [*embed.parameters(), *layer.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.05)
    decay = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.01, steps)  # a sampled gradient's noise settles
    layer.train()
    for _ in range(steps):
        optimizer.zero_grad()
        out = layer(embed(contexts), targets)
        (out.loss / out.tokens).backward()
        optimizer.step()
        decay.step()
    with torch.no_grad():
        out = layer.exact_loss(embed(contexts), targets)
    return float(out.loss / out.tokens)


@pytest.mark.parametrize(("kind", "within"), [("adaptive", 0.01), ("sampled", 0.01), ("nce", 0.05)])
def test_nce_adaptive_and_sampled_learn_a_toy_source_close_to_its_entropy(kind, within):
    """4 contexts, each with its own distribution over 30 words: the best cross-entropy on the sample is its
    empirical conditional entropy. Each layer, trained on its own objective (10 candidates for sampled and
    NCE), gets close to it when measured exactly; NCE's self-normalisation costs it most."""
    torch.manual_seed(5)
    vocab, n = 30, 4000
    table = torch.softmax(3 * torch.randn(4, vocab), dim=-1)
    contexts = torch.randint(4, (n,))
    targets = torch.multinomial(table[contexts], 1).squeeze(1)
    ones = torch.ones(n, dtype=torch.float64)
    joint = torch.zeros(4, vocab, dtype=torch.float64).index_put_((contexts, targets), ones, accumulate=True) / n
    conditional = joint / joint.sum(1, keepdim=True)
    entropy = float(-(joint[joint > 0] * conditional[joint > 0].log()).sum())
    counts = torch.bincount(targets, minlength=vocab).tolist()
    order = sorted(range(vocab), key=lambda k: -counts[k])  # frequency-sorted ids, as a Vocabulary gives
    rank = torch.empty(vocab, dtype=torch.long)
    rank[torch.tensor(order)] = torch.arange(vocab)
    targets, counts = rank[targets], [counts[k] for k in order]
    layer = make_output_layer(kind, 16, vocab, counts=counts, num_samples=10, div_value=2.0)
    reached = _train_toy(layer, contexts, targets)
    assert entropy - 1e-3 < reached < (1 + within) * entropy, (reached, entropy)


def test_config_refuses_what_cannot_work(tiny_corpus_dir):
    with pytest.raises(ConfigError, match="tie_weights"):
        load_config("ptb-small", overrides=["model.output=adaptive", "model.tie_weights=true"])
    with pytest.raises(ConfigError, match="task"):
        load_config("adding-lstm", overrides=["model.output=sampled"])
    with pytest.raises(ConfigError, match="increase"):
        load_config("ptb-small", overrides=["output.cutoffs=[5, 3]"])
    with pytest.raises(ConfigError, match="model.output must be one of"):
        load_config("ptb-small", overrides=["model.output=hierarchical"])


def test_a_tied_sampled_model_shares_and_trains_the_embedding():
    model = RNNLanguageModel(V, embedding_dim=8, hidden_size=8, num_layers=1, tie_weights=True, output="sampled",
                             counts=ZIPF)
    assert isinstance(model.output, SampledSoftmax) and model.embedding.weight is model.output.weight
    tokens = torch.randint(V, (5, 3))
    out = model(tokens, torch.randint(V, (5, 3)))
    out.loss.backward()
    assert model.output.weight.grad is not None and model.output.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["sampled", "nce", "adaptive"])
def test_training_logs_a_sampled_loss_under_its_own_name_and_evaluates_perplexity(kind, tiny_corpus_dir, tmp_path):
    overrides = [*TINY_MODEL, f"data.path={tiny_corpus_dir}", f"model.output={kind}", "output.num_samples=4",
                 "output.div_value=2", "train.max_steps=6", "train.epochs=1", "train.eval_every_steps=3"]
    config = load_config("ptb-small", overrides=overrides)
    result = Trainer(config, tmp_path / "run").fit()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    train = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    objective = {"sampled": "sampled_loss", "nce": "nce_loss", "adaptive": "loss"}[kind]
    assert all(objective in r for r in train)
    if kind != "adaptive":
        assert not any("ppl" in r or "loss" in r for r in train), "a sampled loss is never called a perplexity"
    assert evals and all(r["ppl"] == pytest.approx(math.exp(r["loss"])) for r in evals)
    assert result.test is not None and math.isfinite(result.test["ppl"])


def test_a_sampled_run_resumes_exactly(tiny_corpus_dir, tmp_path):
    """The candidates come from the CPU generator the checkpoint saves: a resumed run draws the same ones."""
    overrides = [*TINY_MODEL, f"data.path={tiny_corpus_dir}", "model.output=sampled", "output.num_samples=3",
                 "output.replacement=true", "train.epochs=2"]
    config = load_config("ptb-small", overrides=overrides)
    Trainer(config.with_overrides({"train.max_steps": 8}), tmp_path / "whole").fit()
    Trainer(config.with_overrides({"train.max_steps": 4}), tmp_path / "split").fit()
    Trainer(config.with_overrides({"train.max_steps": 8}), tmp_path / "split", resume=True).fit()
    latest = [load_checkpoint(run / LATEST)["model"] for run in (tmp_path / "whole", tmp_path / "split")]
    for name, value in latest[0].items():
        assert torch.equal(value, latest[1][name]), name
    losses = [[r["sampled_loss"] for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"]
              for run in (tmp_path / "whole", tmp_path / "split")]
    assert losses[0] == losses[1]


def test_nce_starts_self_normalised():
    layer = make_output_layer("nce", 8, 1000, counts=[1] * 1000)
    assert isinstance(layer, NCELoss)
    assert_close(layer.bias, torch.full((1000,), -math.log(1000)))



@pytest.mark.parametrize("kind", ["sampled", "nce", "adaptive"])
def test_generate_and_diagnose_work_for_every_kind(kind, tiny_corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    sets = [*TINY_MODEL, f"model.output={kind}", "output.num_samples=4", "output.div_value=2", "train.max_steps=4"]
    assert main(["train", "--data", str(tiny_corpus_dir), "--run-dir", str(run), "--quiet",
                 *[arg for item in sets for arg in ("--set", item)]]) == 0
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(run), "--tokens", "6", "--seed", "1", "--prompt", "the"]) == 0
    assert capsys.readouterr().out.startswith("the")
    assert main(["diagnose", "--checkpoint", str(run), "--out", str(tmp_path / "diag")]) == 0
    diagnosis = json.loads((tmp_path / "diag" / "diagnostics.json").read_text())
    assert all(math.isfinite(layer["gradient_flow"]["ratio"]) for layer in diagnosis["layers"])


def test_unique_sampling_never_hangs_when_few_ids_can_be_drawn():
    """A unigram proposal over a vocabulary whose byte pieces never occur (count 0): asking for more distinct
    candidates than the ids it can draw takes every id once instead of drawing forever."""
    sampler = CandidateSampler("unigram", 1100, counts=[0] * 100 + [5] * 1000)
    draw = sampler.draw(1024, replacement=False)
    assert math.isinf(draw.tries) and draw.ids.numel() == 1100
    draw = sampler.draw(900, replacement=False)
    assert draw.ids.numel() == 900 and bool((draw.ids >= 100).all()), "ids with count 0 are never drawn"


@pytest.mark.parametrize(("kind", "loss_function"), [("sampled", sampled_softmax_loss), ("nce", nce_loss)])
def test_each_sampling_layer_trains_on_its_own_loss_over_its_draw(kind, loss_function):
    layer = make_output_layer(kind, H, V, counts=ZIPF, num_samples=5, replacement=True).double().train()
    hidden, targets = _inputs()
    torch.manual_seed(3)
    out = layer(hidden, targets)
    torch.manual_seed(3)
    draw = layer.sampler.draw(5, True)
    expected = loss_function(hidden, targets, layer.weight, layer.bias, draw.ids,
                             layer.sampler.log_expected_count(draw.ids, draw).double(),
                             layer.sampler.log_expected_count(targets, draw).double())
    assert_close(out.loss, expected)
