"""Stage 0 of the tiny report decoder: the generated report corpus, the simulated agents, the
training sequences and the cached LM folder. The LM's ability to read the tokens is measured by
``benchmarks/report_agent_eval.py`` (minutes), not here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml.agents.labels import extract_labels
from ml.agents.report.loss import IGNORE
from ml.agents.report.pretrain import (
    corpus_prevalence,
    ensure_tiny_lm,
    load_tiny_lm,
    simulated_conditions,
    site_pool,
    text_sequence,
    tiny_lm_key,
)
from ml.agents.report.prompt import CONDITION_TAGS
from ml.agents.report.train import default_config
from ml.conditions import CONDITION_KEYS
from ml.data.synthetic.report_corpus import iter_report_samples


def test_report_corpus_is_deterministic_and_its_labels_match_its_text() -> None:
    a = list(iter_report_samples(40, seed=5))
    assert a == list(iter_report_samples(40, seed=5))
    assert [s.report for s in a] != [s.report for s in iter_report_samples(40, seed=6)]
    agree = total = 0
    for s in a:
        got = extract_labels(s.report).labels
        for k in CONDITION_KEYS:
            if s.labels[k] != -1:
                total += 1
                agree += int((got[k] == 1) == (s.labels[k] == 1))
    assert agree / total > 0.97  # the rules extractor was written against the same report writer
    with pytest.raises(ValueError, match="unknown region"):
        next(iter_report_samples(1, regions=("pelvis",)))


def test_simulated_agents_are_calibrated_and_exact_ones_state_the_truth() -> None:
    rng = np.random.default_rng(0)
    samples = list(iter_report_samples(400, seed=1))
    prev = corpus_prevalence(samples)
    probs, truth = [], []
    for s in samples:
        for c in simulated_conditions(s.labels, prev, rng, max_dprime=4.0):
            if s.labels[c.condition] != -1:
                probs.append(c.probability)
                truth.append(s.labels[c.condition] == 1)
                assert c.present == (c.probability >= c.threshold)
    p, y = np.array(probs), np.array(truth)
    assert p[y].mean() > p[~y].mean() + 0.2
    for lo, hi in ((0.0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.0)):
        m = (p >= lo) & (p < hi)
        assert m.sum() > 100
        assert abs(y[m].mean() - p[m].mean()) < 0.06, (lo, hi, y[m].mean(), p[m].mean())
    exact = simulated_conditions(samples[0].labels, prev, rng, 4.0, exact=True)
    for c in exact:
        if samples[0].labels[c.condition] != -1:
            assert c.present == (samples[0].labels[c.condition] == 1)
            assert c.probability == float(c.present)
        assert c.level == ""  # no sites given: no localization


def test_simulated_localization_points_at_true_sites_and_false_calls_at_plausible_ones() -> None:
    rng = np.random.default_rng(0)
    samples = list(iter_report_samples(300, seed=2))
    prev, pool = corpus_prevalence(samples), site_pool(samples)
    assert {lv for lv, _ in pool["disc_herniation"]} <= {"L1-2", "L2-3", "L3-4", "L4-5", "L5-S1"}
    n_true = n_false = 0
    for s in samples:
        for c in simulated_conditions(s.labels, prev, rng, 4.0, False, s.sites, pool):
            if not c.present:
                assert (c.level, c.side) == ("", "")
            elif s.labels[c.condition] == 1:
                assert (c.level, c.side) in s.sites[c.condition]
                n_true += 1
            elif s.labels[c.condition] == 0:
                assert (c.level, c.side) in pool[c.condition]
                n_false += 1
    assert n_true > 500
    assert n_false > 50
    # the report's own text names each site it was drawn from
    s = next(x for x in samples if x.sites.get("synovial_cyst"))
    assert all(lv in s.report for lv, _ in s.sites["synovial_cyst"])


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory) -> tuple[Path, object]:
    cfg = default_config("tiny")
    cfg.tiny_lm.n_texts, cfg.tiny_lm.tokenizer_texts, cfg.tiny_lm.steps = 60, 60, 3
    root = tmp_path_factory.mktemp("models")
    return ensure_tiny_lm(cfg, root=root), cfg


def test_tiny_lm_is_cached_by_its_configuration(lm_folder) -> None:
    folder, cfg = lm_folder
    assert folder.name == f"tiny-report-lm-{tiny_lm_key(cfg)}"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["lm"]["steps"] == 3
    assert len(meta["losses"]) == 3
    stamp = (folder / "meta.json").stat().st_mtime_ns
    assert ensure_tiny_lm(cfg, root=folder.parent) == folder  # read from the cache, not retrained
    assert (folder / "meta.json").stat().st_mtime_ns == stamp
    assert not list(folder.parent.glob("*.partial"))
    cfg.tiny_lm.steps = 4
    assert tiny_lm_key(cfg) != folder.name.rsplit("-", 1)[1]
    cfg.tiny_lm.steps = 3


def test_text_sequences_score_only_the_report_and_follow_the_layout(lm_folder) -> None:
    folder, cfg = lm_folder
    decoder, tok = load_tiny_lm(folder)
    assert decoder.config.num_hidden_layers == cfg.tiny.layers
    s = next(iter_report_samples(1, seed=9))
    rng = np.random.default_rng(0)
    conds = simulated_conditions(s.labels, {k: 0.5 for k in CONDITION_KEYS}, rng, 4.0)
    for agent in (True, False):
        ids, lab, w = text_sequence(tok, cfg, s, conds if agent else [], "IMPRESSION: 1. Normal.", agent, 4.0)
        assert len(ids) == len(lab) == len(w)
        n_prompt = next(i for i, v in enumerate(lab) if v != IGNORE)
        assert lab[n_prompt:] == ids[n_prompt:]
        prompt = tok.decode(ids[:n_prompt])
        assert prompt.startswith("<bos><image></image>")  # no image tokens in stage 0
        assert prompt.rstrip().endswith("<report>")
        assert ("<classification>" in prompt) == agent
        assert ("<similar_case_report>1. Normal.</similar_case_report>" in prompt) == agent
        assert tok.decode(ids[n_prompt:]).strip().endswith("<end_of_report><eos>")
        assert set(w[:n_prompt]) == {0.0}
        n_body = w.index(4.0)  # the IMPRESSION (and what follows it) weighs 4
        assert set(w[n_prompt:n_body]) == {1.0}
        assert set(w[n_body:]) == {4.0}
        assert tok.decode(ids[n_body:]).startswith("IMPRESSION:")
    # every condition tag of the classification block is one token of the tiny vocabulary
    for tag in CONDITION_TAGS:
        pieces = tok.tokenize(f"x {tag} 0.9")
        assert tag in pieces
        assert tok.convert_tokens_to_string(pieces) == f"x {tag} 0.9"
    ids, lab, _ = text_sequence(tok, cfg, s, conds, None, True)
    tags = [t for t in tok.convert_ids_to_tokens(ids) if t in CONDITION_TAGS]
    assert sorted(tags) == sorted(f"<{c.condition}:{'yes' if c.present else 'no'}>" for c in conds)


def test_weighted_report_loss_reduces_to_the_plain_one_and_follows_the_weights() -> None:
    import torch

    from ml.agents.report.loss import report_lm_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)  # [B, T, V]
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, 5, 6], [IGNORE, 1, 2, 3, IGNORE, IGNORE]])
    plain = report_lm_loss(logits, labels)
    torch.testing.assert_close(report_lm_loss(logits, labels, torch.ones(2, 6)), plain)
    only_last = torch.zeros(2, 6)
    only_last[0, 5] = 1.0  # label 6 predicted from position 4
    expected = torch.nn.functional.cross_entropy(logits[0, 4:5], labels[0, 5:6])
    torch.testing.assert_close(report_lm_loss(logits, labels, only_last), expected)
