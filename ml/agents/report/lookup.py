"""Prompt lookup decoding for one study's draft: the plain greedy draft in fewer forward passes.

Why: a report repeats whole phrases of the similar case's report that is in its prompt, so the
up to ``lookup`` tokens that followed the draft's last words there are checked in one forward
pass, and every one the model would have chosen itself is kept. Each pass reads all the
decoder's weights, and on a CPU that, not the arithmetic, is a token's cost: a pass that checks
ten tokens costs little more than one (docs/report-agent.md, "Generation").

Our own loop rather than ``generate(prompt_lookup_num_tokens=)``: the prompt is read as
embeddings (its 64 image tokens have no ids), and transformers' lookup needs the prompt as ids.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def propose_from_prompt(source: list[int], new: list[int], ngram: int, k: int) -> list[int]:
    """Up to ``k`` tokens that followed the last ``ngram`` (then fewer) tokens of the draft where
    they first occur in the prompt ``source`` or earlier in the draft; [] without a match.
    A -1 in ``source`` (an image token, a token outside the vocabulary) ends a guess."""
    if k <= 0:
        return []
    seq = source + new
    end = len(seq)
    for n in range(min(ngram, len(new)), 0, -1):
        tail = seq[end - n :]
        for i in range(end - n):
            if seq[i : i + n] == tail:
                guess = seq[i + n : min(i + n + k, end)]
                if -1 in guess:
                    guess = guess[: guess.index(-1)]
                if guess:
                    return guess
    return []


@torch.no_grad()
def greedy_with_prompt_lookup(
    decoder: nn.Module,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    source: list[int],
    budget: int,
    lookup: int,
    ngram: int,
    stops: set[int],
    stop_text: Callable[[list[int]], bool] | None = None,
) -> torch.Tensor:
    """One study's greedy draft -> its new tokens [1, N].

    ``embeds`` [1, T, H] and ``mask`` [1, T] are the prompt; ``source`` its T tokens as the
    decoder's output ids (-1 where there is none); ``stops`` end the draft (kept), as does
    ``stop_text`` returning True on the tokens so far (a marker that is several tokens).
    """
    out = decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=True)
    cache = out.cache
    cache.activate_past_recording()  # sliding-window layers keep what a rejected guess must give back
    new = [int(out.logits[0, -1].argmax())]
    cached = embeds.shape[1]  # tokens in the cache
    device = embeds.device
    while len(new) < budget and new[-1] not in stops:
        if stop_text is not None and stop_text(new):
            break
        guess = propose_from_prompt(source, new, ngram, min(lookup, budget - len(new) - 1))
        step = torch.tensor([[new[-1], *guess]], dtype=torch.long, device=device)  # [1, 1+k]
        out = decoder(
            input_ids=step,
            attention_mask=torch.ones(1, cached + step.shape[1], dtype=torch.long, device=device),
            cache=cache,
            use_cache=True,
        )
        chosen = out.logits[0].argmax(-1).tolist()  # [1+k]: the model's token after each input
        kept = 0
        while kept < len(guess) and guess[kept] == chosen[kept]:
            kept += 1
        cache.crop(-(len(guess) - kept))  # the rejected guesses' keys and values
        cached += 1 + kept
        for t in chosen[: kept + 1]:
            new.append(t)
            if t in stops or len(new) >= budget:
                break
    return torch.tensor([new], dtype=torch.long, device=device)
