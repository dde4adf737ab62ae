"""The gemma-3-270m preset of the report agent, end to end on CPU (slow): real Gemma-3-270M from
the installed GGUF package, projector tokens as ``inputs_embeds``, trainable LoRA, generation
stopped by the multi-token end marker string or the budget, save/load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.agents.report import ReportAgent, ReportExample, train_report_agent
from ml.agents.report.decoders import load_pretrained_decoder
from ml.agents.report.train import default_config


@pytest.mark.slow
def test_gemma_preset_trains_lora_and_generates(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ex = [
        ReportExample(
            t1_slices=[rng.normal(size=(4, 32)).astype(np.float32)],
            t2_slices=[rng.normal(size=(4, 32)).astype(np.float32)],
            region="lumbar",
            target="IMPRESSION:\n1. Normal MRI of the lumbar spine.",
        )
        for _ in range(2)
    ]
    cfg = default_config("gemma-3-270m")
    cfg.train.batch_size = 1
    cfg.max_prompt_tokens = 256
    folder = train_report_agent(ex, tmp_path / "g", preset="gemma-3-270m", stage1_steps=1, stage2_steps=1, config=cfg)
    agent = ReportAgent.load(folder)
    assert agent.hidden_size == 640
    assert agent.has_lora
    assert (folder / "adapter" / "adapter_config.json").exists()
    assert not (folder / "decoder").exists()  # the base weights come from the package, not copied
    # the writer's output is its report vocabulary, a small part of Gemma's 262k tokens
    assert (folder / "vocab.json").exists()
    assert agent.vocab is not None
    assert 100 < len(agent.vocab) < len(agent.tokenizer) // 50
    adapter_bytes = sum(f.stat().st_size for f in (folder / "adapter").rglob("*") if f.is_file())
    assert adapter_bytes < 20e6, "the adapter folder holds more than the LoRA weights"
    agent.train()
    agent.set_stage(2)
    lora = [p for n, p in agent.named_parameters() if "lora_" in n]
    assert lora
    assert all(p.requires_grad for p in lora)
    embeds, mask, labels = agent.build_batch([ex[0]], [ex[0].target])
    assert int((labels != -100).sum()) > 0  # the target tokens are scored
    assert embeds.shape[-1] == 640
    out = agent.generate(ex[0], max_new_tokens=5)
    assert out.tokens <= 5
    assert "<end_of_report>" not in out.text
    with torch.no_grad():
        logits = agent(embeds, mask)  # [1, T, K]
        assert logits.shape[-1] == len(agent.vocab)
        assert torch.isfinite(logits).all()
    # every kept token gets the logit the unrestricted decoder gives it. Compared in float32 (the
    # bfloat16 weights widened, exactly): in bfloat16 the matrix product over the kept rows is
    # blocked differently from the one over all 262k rows and may round a logit one bfloat16 step
    # (1/16 at 10) the other way, depending on how many rows the vocabulary keeps.
    agent.decoder.float()
    with torch.no_grad():
        full = load_pretrained_decoder(agent.cfg)[0].float().eval()
        wide = embeds.float()
        want = full(inputs_embeds=wide, attention_mask=mask).logits[..., agent.vocab.ids]
        with agent.decoder.disable_adapter():  # the base decoder, as the full one is
            got = agent.decoder(inputs_embeds=wide, attention_mask=mask).logits
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # prompt lookup past Gemma's sliding window (512): the rejected guesses are given back in the
    # sliding layers too, and the draft is the plain greedy one (compared in float32, where a
    # several-token pass and a one-token pass agree to the last bit that matters)
    agent.cfg.max_prompt_tokens = 1024  # trained with 256 above; served with the preset's 1024
    long_case = "\n".join(f"L{i % 5 + 1}: disc bulge without canal stenosis, level {i}." for i in range(60))
    item = dataclasses.replace(ex[0], similar_report=long_case)
    pre, post = agent.prompt_ids(item)
    assert len(pre) + agent.cfg.projector.n_queries + len(post) > agent.decoder.get_base_model().config.sliding_window
    drafts = []
    for lookup in (0, 10):
        agent.cfg.prompt_lookup_tokens = lookup
        drafts.append(agent.generate(item, max_new_tokens=40))
    assert (drafts[1].text, drafts[1].tokens) == (drafts[0].text, drafts[0].tokens)
