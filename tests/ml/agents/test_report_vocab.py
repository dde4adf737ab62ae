"""The report vocabulary (``ml.agents.report.vocab``): a decoder whose output is limited to the
tokens reports use gives every kept token the logit the full decoder gives it, scores only
targets inside the vocabulary, writes only inside it, and stops on its marker in a batch.
Untrained tiny Llama decoder on CPU (seconds); the real Gemma path is in test_report_gemma.py."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.agents.report import ReportAgent, ReportInputs
from ml.agents.report.config import ReportAgentConfig
from ml.agents.report.decoders import build_tiny_decoder, train_tokenizer
from ml.agents.report.loss import IGNORE
from ml.agents.report.vocab import ReportVocabulary, restrict_decoder
from ml.data.synthetic.report_corpus import iter_report_samples

D = 24


@pytest.fixture(scope="module")
def parts() -> tuple[ReportAgentConfig, object, list[str]]:
    cfg = ReportAgentConfig()
    cfg.tiny.vocab_size = 600
    cfg.projector.slice_dim = D
    texts = [s.report for s in iter_report_samples(60, seed=4)]
    tok = train_tokenizer(texts, cfg.tiny.vocab_size, cfg.end_marker)
    return cfg, tok, texts


def _vocab(tok, texts: list[str], marker: str) -> ReportVocabulary:  # type: ignore[no-untyped-def]
    return ReportVocabulary.build(tok, [t + "\n" + marker for t in texts], (tok.bos_token_id, tok.eos_token_id))


def test_vocabulary_maps_ids_both_ways_and_round_trips(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg, tok, texts = parts
    v = _vocab(tok, texts[:5], cfg.end_marker)
    assert 0 < len(v) < len(tok)
    ids = tok(texts[0], add_special_tokens=False)["input_ids"]
    assert v.full(v.local(ids)) == ids
    odd = tok(" ~@^|", add_special_tokens=False)["input_ids"]  # bytes no report uses
    outside = [i for i in odd if i not in v]
    assert outside, "the test needs a token outside the vocabulary"
    assert v.local(outside, missing=IGNORE) == [IGNORE] * len(outside)
    with pytest.raises(KeyError, match="not in the report vocabulary"):
        v.local(outside)
    v.save(tmp_path)
    again = ReportVocabulary.load(tmp_path)
    assert again is not None
    assert again.ids == v.ids
    assert ReportVocabulary.load(tmp_path / "none") is None
    with pytest.raises(ValueError, match="at least one token"):
        ReportVocabulary([])


def test_restricted_decoder_gives_kept_tokens_the_full_logits(parts) -> None:  # type: ignore[no-untyped-def]
    cfg, tok, texts = parts
    torch.manual_seed(0)
    full = build_tiny_decoder(cfg, tok).eval()
    small = copy.deepcopy(full)
    v = _vocab(tok, texts[:20], cfg.end_marker)
    embed = restrict_decoder(small, v)
    ids = torch.tensor([tok(texts[1], add_special_tokens=False)["input_ids"][:80]])
    with torch.no_grad():
        want = full(input_ids=ids).logits[0][:, v.ids]  # [T, K]
        got = small(inputs_embeds=embed(ids)).logits[0]  # [T, K]
        # the decoder's own embedding now takes local ids and embeds them as the full one does
        local = torch.tensor([v.local(ids[0].tolist(), missing=0)])
        kept = torch.tensor([int(i) in v for i in ids[0]])
        torch.testing.assert_close(small.get_input_embeddings()(local)[0][kept], embed(ids)[0][kept])
    assert got.shape == (ids.shape[1], len(v))
    torch.testing.assert_close(got, want)
    assert not small.config.tie_word_embeddings


def test_agent_with_a_vocabulary_scores_and_writes_inside_it(parts) -> None:  # type: ignore[no-untyped-def]
    cfg, tok, texts = parts
    torch.manual_seed(1)
    v = _vocab(tok, texts[:20], cfg.end_marker)
    agent = ReportAgent(cfg, build_tiny_decoder(cfg, tok), tok, v)
    rng = np.random.default_rng(0)
    item = ReportInputs(t1_slices=[rng.normal(size=(6, D)).astype(np.float32)], t2_slices=[])
    target = texts[0] + " ~@^|"
    embeds, mask, labels = agent.build_batch([item], [target])
    scored = labels[labels != IGNORE]
    assert len(scored) > 10
    assert int(scored.max()) < len(v)  # labels are local ids
    n_outside = sum(i not in v for i in agent.target_ids(target))
    assert n_outside > 0
    assert int((labels != IGNORE).sum()) == len(agent.target_ids(target)) - n_outside
    assert agent(embeds, mask).shape[-1] == len(v)

    # batched generation: rows of different prompt lengths, left-padded, each decoded alone
    other = ReportInputs(t1_slices=[rng.normal(size=(3, D)).astype(np.float32)], t2_slices=[], similar_report=texts[2])
    both = agent.generate_many([item, other], max_new_tokens=12)
    alone = [agent.generate(item, max_new_tokens=12), agent.generate(other, max_new_tokens=12)]
    assert [d.text for d in both] == [d.text for d in alone]
    for d in both:
        assert 0 < d.tokens <= 12
        pieces = tok(d.text, add_special_tokens=False)["input_ids"]
        assert all(i in v for i in pieces), "the writer emitted a token outside its vocabulary"


def test_a_batch_row_is_cut_at_its_stop_token_or_before_the_padding_after_it() -> None:
    assert ReportAgent._trim([5, 9, 3, 0, 0], {3}, pad=0) == [5, 9, 3]  # the stop token counts
    assert ReportAgent._trim([5, 9, 0, 0], {3}, pad=0) == [5, 9]  # stopped on the marker's text, then padded
    assert ReportAgent._trim([5, 9, 0, 0], {3}) == [5, 9, 0, 0]  # no pad id: nothing to cut


def test_decoder_dtype_auto_is_bfloat16_only_where_it_is_native() -> None:
    """``dtype: auto`` is decided on the machine that loads the writer: bfloat16 where the
    hardware runs it natively, float32 elsewhere (emulated bfloat16 is slower than float32)."""
    from ml.agents.report.decoders import native_bf16, resolve_dtype

    assert resolve_dtype("auto") == (torch.bfloat16 if native_bf16() else torch.float32)
    assert resolve_dtype("float32") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown decoder dtype"):
        resolve_dtype("float33")
    with pytest.raises(ValueError, match="unknown decoder dtype"):
        resolve_dtype("nn")  # a torch attribute that is not a dtype
