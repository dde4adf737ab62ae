"""LLM label back-end: answer parsing on real model-style strings, prompt files, and (slow) the
end-to-end path with the real Gemma-3-270M converted from the installed GGUF package."""

from __future__ import annotations

import pytest

from ml.agents.labels import extract_labels
from ml.agents.labels.llm import load_prompts, parse_answer
from ml.conditions import CONDITION_KEYS


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (" present", 1),
        ("Present\n\nReport:", 1),
        (" yes, there is a protrusion", 1),
        ("**Present**", 1),
        ("Answer: present", 1),
        ('"absent"', 0),
        (" absent.", 0),
        (" No.", 0),
        (" not present", 0),
        (" Not mentioned in the report", 0),
        (" negative", 0),
        (" uncertain", -1),
        (" Possibly present", -1),
        (" maybe", -1),
        (" cannot be excluded", -1),
        (" equivocal", -1),
        (" The answer is: absent", 0),
        ("", None),
        (" \n", None),
        (" L4-5", None),
        (" presenting symptoms", None),
    ],
)
def test_parse_answer_reads_model_style_strings(raw: str, want: int | None) -> None:
    assert parse_answer(raw) == want


def test_every_condition_has_a_versioned_prompt_with_a_report_slot() -> None:
    prompts = load_prompts("v1")
    assert set(prompts) == set(CONDITION_KEYS)
    for key, text in prompts.items():
        assert text.count("{report}") == 1, key
        assert text.rstrip().endswith("Answer:"), key
    with pytest.raises(FileNotFoundError, match="no prompt version"):
        load_prompts("v999")


def test_llm_backend_needs_a_model_path(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs model="):
        extract_labels("No stenosis.", backend="llm")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        extract_labels("No stenosis.", backend="llm", model=str(tmp_path / "missing"))


@pytest.mark.slow
def test_gemma_270m_labels_a_report_end_to_end() -> None:
    """Real Gemma-3-270M (converted once into $SPINEREVIEW_CACHE/models, ~2 min the first time)."""
    from ml.agents.labels.llm import LLMExtractor
    from ml.agents.report.decoders import ensure_gemma_270m

    report = "FINDINGS: L4-5: Left paracentral extrusion.\nIMPRESSION:\n1. Disc herniation at L4-5."
    ext = LLMExtractor(str(ensure_gemma_270m()), method="score", batch_size=6)
    res = ext.extract(report)
    assert set(res.labels) == set(CONDITION_KEYS)
    assert all(v in (-1, 0, 1) for v in res.labels.values())
    assert all(0.0 < c <= 1.0 for c in res.confidence.values())
    assert res.extractor.startswith("llm/gemma-3-270m/prompts-v1/score")
    if res.labels["disc_herniation"] != 0:
        assert res.evidence["disc_herniation"] in report
    # greedy generation is parsed from the same model's real output
    gen = LLMExtractor(str(ensure_gemma_270m()), method="generate", batch_size=6)
    out = gen.extract_many([report])[0]
    assert set(out.labels) == set(CONDITION_KEYS)
    # the counter agrees with the answers: exactly the unparseable ones are -1 with confidence 0,
    # every parsed answer keeps its label with confidence 0.7
    unparsed = [k for k, c in out.confidence.items() if c == 0.0]
    assert gen.unparsed == len(unparsed)
    assert all(out.labels[k] == -1 for k in unparsed)
    assert all(c == 0.7 for k, c in out.confidence.items() if k not in unparsed)
    # a second report adds to the count instead of resetting it
    before = gen.unparsed
    again = gen.extract_many([report])[0]
    assert gen.unparsed == before + sum(c == 0.0 for c in again.confidence.values())
    assert again.labels == out.labels  # greedy decoding is deterministic
