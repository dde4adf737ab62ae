"""Medical Report Agent: projector shapes, stage freezing (trainable LoRA), prompt variants,
save/load round trip, token budget and stop marker. Tiny decoder on CPU, seconds per test."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.agents.analysis import ConditionResult
from ml.agents.report import ReportAgent, ReportExample, ReportInputs, train_report_agent
from ml.agents.report.loss import report_lm_loss
from ml.agents.report.projector import AttentionPoolProjector
from ml.agents.report.prompt import prompt_parts, split_sections, writer_text
from ml.agents.report.train import default_config
from ml.conditions import CONDITION_KEYS

SHORT = "IMPRESSION:\n1. No acute abnormality."
D = 48


def _conds(present: set[str]) -> list[ConditionResult]:
    return [
        ConditionResult(k, 0.9 if k in present else 0.1, k in present, 0.5, level="L4-5" if k in present else "")
        for k in CONDITION_KEYS
    ]


def _example(rng: np.random.Generator, target: str, present: set[str] | None = None) -> ReportExample:
    return ReportExample(
        t1_slices=[rng.normal(size=(int(rng.integers(5, 12)), D)).astype(np.float32)],
        t2_slices=[rng.normal(size=(int(rng.integers(5, 12)), D)).astype(np.float32) for _ in range(2)],
        conditions=_conds(present or set()),
        similar_report="ALIGNMENT: Normal alignment.",
        region="lumbar",
        target=target,
    )


@pytest.fixture(scope="module")
def short_agent_dir(tmp_path_factory) -> Path:
    """A tiny agent that learnt one short report (so it must stop on its end marker)."""
    rng = np.random.default_rng(0)
    examples = [_example(rng, SHORT) for _ in range(6)]
    out = tmp_path_factory.mktemp("report_agent") / "agent"
    small_lm = {"tiny_lm.n_texts": 300, "tiny_lm.tokenizer_texts": 300, "train.lr_stage2": 5e-3}
    return train_report_agent(
        examples, out, preset="tiny", stage0_steps=60, stage1_steps=10, stage2_steps=60, overrides=small_lm
    )


def test_projector_makes_64_tokens_of_the_decoder_width() -> None:
    cfg = default_config("tiny").projector
    cfg.slice_dim = D
    proj = AttentionPoolProjector(cfg, hidden_size=96)
    rng = np.random.default_rng(1)
    batch = [
        ([rng.normal(size=(7, D))], [rng.normal(size=(9, D)), rng.normal(size=(3, D))]),
        ([], [rng.normal(size=(200, D))]),  # clipped to max_slices
    ]
    x, seq, pos, pad = proj.pack(batch, torch.device("cpu"))
    assert x.shape == (2, cfg.max_slices, D)
    assert int((~pad[0]).sum()) == 19
    assert seq[0, :7].eq(0).all()
    assert seq[0, 7:19].eq(1).all()
    out = proj(x, seq, pos, pad)
    assert out.shape == (2, 64, 96)
    # padding is ignored: appending padded rows does not change study 0's tokens
    alone = proj(*proj.pack(batch[:1], torch.device("cpu")))
    torch.testing.assert_close(alone[0], out[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"\[S, 48\]"):
        proj.pack([([rng.normal(size=(4, D + 1))], [])], torch.device("cpu"))
    with pytest.raises(ValueError, match="at least one T1 or T2"):
        proj.pack([([], [])], torch.device("cpu"))


def test_prompt_without_agent_tokens_keeps_only_image_region_and_template() -> None:
    conds = _conds({"canal_stenosis"})
    head, sim, tail = prompt_parts(conds, "prior text", "lumbar", use_agent_tokens=True)
    full = head + sim + tail
    assert (
        "<classification>likely: Spinal canal stenosis <canal_stenosis:yes> 0.9 | "
        "unlikely: Acute vertebral fracture <acute_fracture:no> 0.1; " in full
    )
    assert "<localization>Spinal canal stenosis L4-5</localization>" in full
    # both lists in the order an impression lists findings (urgent first), whatever order the agents ran in
    two = list(reversed(_conds({"hemangioma", "acute_fracture", "disc_herniation"})))
    head, _, _ = prompt_parts(two, None, "lumbar", use_agent_tokens=True)
    assert "likely: Acute vertebral fracture <acute_fracture:yes> 0.9; Disc herniation (protrusion/extrusion)" in head
    assert "<disc_herniation:yes> 0.9; Vertebral hemangioma <hemangioma:yes> 0.9 | unlikely:" in head
    assert "<localization>Acute vertebral fracture L4-5; Disc herniation (protrusion/extrusion) L4-5; Vertebral" in head
    assert "<similar_case_report>prior text</similar_case_report>" in full
    assert "DISCS: L1-2, L2-3, L3-4, L4-5, L5-S1" in full
    head, sim, tail = prompt_parts(conds, "prior text", "lumbar", use_agent_tokens=False)
    plain = head + sim + tail
    assert "classification" not in plain
    assert "similar_case" not in plain
    assert "prior text" not in plain
    assert "<template>" in plain


def test_stage1_trains_only_the_projector_and_stage2_trains_lora(short_agent_dir: Path) -> None:
    agent = ReportAgent.load(short_agent_dir)
    agent.train()
    agent.set_stage(1)
    trainable = {n for n, p in agent.named_parameters() if p.requires_grad}
    assert trainable
    assert all(n.startswith("projector.") for n in trainable)

    agent.set_stage(2)
    lora = {n: p for n, p in agent.named_parameters() if "lora_" in n}
    assert lora
    assert all(p.requires_grad for p in lora.values())  # the paper's released code froze these
    base = {n: p for n, p in agent.decoder.named_parameters() if "lora_" not in n}
    assert not any(p.requires_grad for p in base.values())

    before_lora = {n: p.detach().clone() for n, p in lora.items()}
    before_base = {n: p.detach().clone() for n, p in base.items()}
    opt = torch.optim.AdamW([p for p in agent.parameters() if p.requires_grad], lr=1e-2)
    ex = _example(np.random.default_rng(5), SHORT)
    embeds, mask, labels = agent.build_batch([ex], [ex.target])
    report_lm_loss(agent(embeds, mask), labels).backward()
    opt.step()
    changed = [n for n, p in lora.items() if not torch.equal(p, before_lora[n])]
    assert len(changed) == len(lora)
    assert all(torch.equal(p, before_base[n]) for n, p in base.items())


def test_generation_stops_at_the_marker_and_respects_the_budget(short_agent_dir: Path) -> None:
    agent = ReportAgent.load(short_agent_dir)
    ex = _example(np.random.default_rng(7), SHORT)
    inputs = ReportInputs(**{f.name: getattr(ex, f.name) for f in dataclasses.fields(ReportInputs)})
    out = agent.generate(inputs, max_new_tokens=200)
    assert out.text == SHORT
    assert "<end_of_report>" not in out.text
    assert out.tokens < 40  # stopped on the marker, long before the budget
    assert out.sections == {"IMPRESSION": "1. No acute abnormality."}
    assert out.seconds > 0
    cut = agent.generate(inputs, max_new_tokens=3)
    assert cut.tokens == 3
    assert len(cut.text) < len(SHORT)
    with pytest.raises(ValueError, match="max_new_tokens"):
        agent.generate(inputs, max_new_tokens=0)


def test_save_load_round_trip_gives_identical_greedy_generation(short_agent_dir: Path, tmp_path: Path) -> None:
    a = ReportAgent.load(short_agent_dir)
    ex = _example(np.random.default_rng(9), SHORT, present={"disc_herniation"})
    first = a.generate(ex, max_new_tokens=25)
    a.save(tmp_path / "copy")
    assert (tmp_path / "copy" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "copy" / "projector.safetensors").exists()
    b = ReportAgent.load(tmp_path / "copy")
    second = b.generate(ex, max_new_tokens=25)
    assert first.text == second.text
    assert first.tokens == second.tokens
    for (n, p), (m, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert n == m
        assert torch.equal(p, q), n


def _passes(agent: ReportAgent, inputs: ReportInputs, lookup: int) -> tuple[str, int, int]:
    """(draft, new tokens, decoder forward passes) with prompt lookup of ``lookup`` tokens (0: off)."""
    calls = []
    handle = agent.decoder.get_base_model().model.register_forward_hook(lambda *a: calls.append(1))
    agent.cfg.prompt_lookup_tokens = lookup
    try:
        out = agent.generate(inputs, max_new_tokens=60)
    finally:
        handle.remove()
    return out.text, out.tokens, len(calls)


def test_prompt_lookup_gives_the_plain_greedy_draft_in_fewer_passes(short_agent_dir: Path) -> None:
    agent = ReportAgent.load(short_agent_dir)
    assert agent.cfg.prompt_lookup_tokens > 0  # on by default, also for agents saved before it existed
    rng = np.random.default_rng(11)
    for similar in (SHORT, "ALIGNMENT: Normal alignment.", None):  # the draft in the prompt, a part, none
        ex = dataclasses.replace(_example(rng, SHORT), similar_report=similar)
        inputs = ReportInputs(**{f.name: getattr(ex, f.name) for f in dataclasses.fields(ReportInputs)})
        plain = _passes(agent, inputs, 0)
        looked = _passes(agent, inputs, 10)
        assert looked[:2] == plain[:2], similar
        assert looked[2] <= plain[2]
        if similar == SHORT:  # the draft's words are in the prompt: some passes keep several tokens
            assert looked[2] < plain[2], (looked, plain)
    cut = dataclasses.replace(inputs, similar_report=SHORT)
    agent.cfg.prompt_lookup_tokens = 10
    assert agent.generate(cut, max_new_tokens=3).tokens == 3  # the budget holds when guesses run past it


def test_prompt_lookup_guesses_what_followed_the_last_words() -> None:
    from ml.agents.report.lookup import propose_from_prompt

    prompt = [5, 6, 7, 8, 9, -1, 6, 7, 4]
    assert propose_from_prompt(prompt, [6, 7], ngram=3, k=2) == [8, 9]  # the first place the words occur
    assert propose_from_prompt(prompt, [1, 7, 8], ngram=3, k=10) == [9]  # shorter match; stops at -1
    assert propose_from_prompt(prompt, [3, 2], ngram=3, k=5) == []  # not in the prompt
    assert propose_from_prompt(prompt, [6, 7], ngram=3, k=0) == []
    assert propose_from_prompt([], [2, 3, 2], ngram=2, k=3) == [3, 2]  # earlier in the draft itself


def test_training_rejects_bad_examples(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="at least one example"):
        train_report_agent([], tmp_path / "x")
    with pytest.raises(ValueError, match="non-empty target"):
        train_report_agent([_example(rng, " ")], tmp_path / "x")
    bad = _example(rng, SHORT)
    bad.t2_slices = [rng.normal(size=(4, D + 2))]
    with pytest.raises(ValueError, match="one width"):
        train_report_agent([bad], tmp_path / "x")
    with pytest.raises(ValueError, match="unknown report-agent preset"):
        train_report_agent([_example(rng, SHORT)], tmp_path / "x", preset="gpt-5")
    assert not (tmp_path / "x").exists()


def test_split_sections_reads_the_template_headers() -> None:
    text = "CLINICAL HISTORY: Pain.\nDISCS:\n  L4-5: Protrusion.\nIMPRESSION:\n1. Disc herniation at L4-5."
    assert split_sections(text) == {
        "CLINICAL HISTORY": "Pain.",
        "DISCS": "L4-5: Protrusion.",
        "IMPRESSION": "1. Disc herniation at L4-5.",
    }


def test_the_writer_learns_the_report_from_alignment_on(short_agent_dir: Path) -> None:
    """Clinical history, technique and comparison come from the DICOM request and the classified
    series (grounding), never from the writer: its targets and its template start at ALIGNMENT,
    and a report in another layout is taught whole."""
    report = (
        "CLINICAL HISTORY: 42-year-old female with low back pain.\nTECHNIQUE: Sagittal T1, T2.\n"
        "COMPARISON: None.\nALIGNMENT: Normal.\nDISCS:\n  L4-5: Protrusion.\nIMPRESSION:\n1. Disc herniation at L4-5."
    )
    assert (
        writer_text(report)
        == "ALIGNMENT: Normal.\nDISCS:\n  L4-5: Protrusion.\nIMPRESSION:\n1. Disc herniation at L4-5."
    )
    free = "Findings: mild L4-5 protrusion. No history given."
    assert writer_text(free) == free
    assert writer_text("CLINICAL HISTORY: Pain.\nTECHNIQUE: T2.") == ""
    agent = ReportAgent.load(short_agent_dir)
    taught = agent.decode(agent.target_ids(report))
    assert taught.startswith("ALIGNMENT: Normal.")
    assert "low back pain" not in taught
    assert "Sagittal T1" not in taught
    head, _sim, tail = prompt_parts(_conds(set()), None, "lumbar", True)
    assert "<template>ALIGNMENT:" in tail
    assert "CLINICAL HISTORY" not in head + tail


def test_each_training_stage_says_how_far_it_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A line for each stage's first and last step, with its pace, time left and loss: on 2 cores a
    gemma step takes 5-15 s, and a fixed 20-step interval left minutes without a line."""
    import logging

    rng = np.random.default_rng(0)
    small_lm = {"tiny_lm.n_texts": 300, "tiny_lm.tokenizer_texts": 300}
    with caplog.at_level(logging.INFO, logger="ml.agents.report.train"):
        train_report_agent(
            [_example(rng, SHORT) for _ in range(3)], tmp_path / "a", preset="tiny",
            stage0_steps=60, stage1_steps=2, stage2_steps=3, overrides=small_lm,
        )  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if r.name == "ml.agents.report.train"]
    for stage, n in (("stage1", 2), ("stage2", 3)):
        for done in (1, n):
            head = f"report {stage}: {done}/{n} steps ("
            assert any(m.startswith(head) and " left) loss " in m for m in lines), lines
