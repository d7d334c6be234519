"""Sampling text from a trained language model."""

from __future__ import annotations

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

    ``temperature`` divides the log-probabilities (< 1 sharpens, > 1 flattens); ``top_k`` > 0
    samples among the k most likely tokens only. Returns prompt and continuation as text.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    prompt_tokens = tokenizer.tokenize(prompt) if prompt else []
    prompt_ids, _ = vocab.encode(prompt_tokens)
    context = torch.cat([torch.tensor([vocab.eos_id]), prompt_ids]).to(device)
    with evaluating(model):
        features, state = model.features(context.unsqueeze(1))  # (T, 1) -> (T, 1, H)
        sampled: list[int] = []
        for _ in range(tokens):
            log_probs = model.output.log_probs(features[-1]).squeeze(0).float().cpu()  # (V,)
            log_probs = log_probs / temperature
            if 0 < top_k < log_probs.numel():
                threshold = torch.topk(log_probs, top_k).values[-1]
                log_probs = log_probs.masked_fill(log_probs < threshold, float("-inf"))
            next_id = int(torch.multinomial(torch.softmax(log_probs, dim=-1), 1, generator=generator))
            sampled.append(next_id)
            features, state = model.features(torch.tensor([[next_id]], device=device), state)
    return tokenizer.detokenize(prompt_tokens + vocab.decode(sampled))
