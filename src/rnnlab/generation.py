"""Sampling text from a trained language model."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from rnnlab.data.tokenizers import Tokenizer
from rnnlab.data.vocab import Vocabulary
from rnnlab.models.language_model import RNNLanguageModel
from rnnlab.nn.mode import evaluating


@torch.no_grad()
def generate(
    model: RNNLanguageModel,
    vocab: Vocabulary,
    tokenizer: Tokenizer,
    *,
    prompt: str = "",
    tokens: int = 50,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
) -> str:
    """Continue ``prompt`` (read as if it started a line) by ``tokens`` sampled tokens.

    ``temperature`` divides the log-probabilities (< 1 sharpens, > 1 flattens; any value > 0 works: a tiny one
    is greedy); ``top_k`` > 0 samples among the k most likely tokens only. Returns prompt and continuation as
    text (generate_stream gives it piece by piece while sampling)."""
    *_, every = _sample(model, vocab, tokenizer, prompt, tokens, temperature, top_k, seed)
    return tokenizer.detokenize(every)


@torch.no_grad()  # works on generator functions too: every step of the stream runs without autograd
def generate_stream(
    model: RNNLanguageModel,
    vocab: Vocabulary,
    tokenizer: Tokenizer,
    *,
    prompt: str = "",
    tokens: int = 50,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
) -> Iterator[str]:
    """generate, as text pieces while the tokens are sampled: the prompt first, then what each token adds to the
    detokenized text. Text ending in an incomplete character (a byte piece that needs the next one: U+FFFD) is
    held back until it is complete, so ``"".join`` of the pieces is what generate returns."""
    shown = ""
    for every in _sample(model, vocab, tokenizer, prompt, tokens, temperature, top_k, seed):
        text = tokenizer.detokenize(every)
        if text.startswith(shown) and not text.endswith("\ufffd"):
            yield text[len(shown):]
            shown = text
    if text != shown and text.startswith(shown):
        yield text[len(shown):]


def _sample(model: RNNLanguageModel, vocab: Vocabulary, tokenizer: Tokenizer, prompt: str, tokens: int,
            temperature: float, top_k: int, seed: int | None) -> Iterator[list[str]]:
    """The prompt's tokens, then after each sampled token all tokens so far (the model in eval mode)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    prompt_tokens = tokenizer.tokenize(prompt) if prompt else []
    prompt_ids, _ = vocab.encode(prompt_tokens)
    context = torch.cat([torch.tensor([vocab.eos_id]), prompt_ids]).to(device)
    yield list(prompt_tokens)
    with evaluating(model):
        features, state = model.features(context.unsqueeze(1))  # (T, 1) -> (T, 1, H)
        sampled: list[int] = []
        for _ in range(tokens):
            log_probs = model.output.log_probs(features[-1]).squeeze(0).double().cpu()  # (V,)
            # Shifted so the best token sits at 0 before dividing: no overflow, however small the temperature.
            scaled = (log_probs - log_probs.max()) / temperature
            if 0 < top_k < scaled.numel():
                threshold = torch.topk(scaled, top_k).values[-1]
                scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
            next_id = int(torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator))
            sampled.append(next_id)
            yield prompt_tokens + vocab.decode(sampled)
            features, state = model.features(torch.tensor([[next_id]], device=device), state)
