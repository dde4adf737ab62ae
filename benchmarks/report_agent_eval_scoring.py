"""Scoring and reporting of ``report_agent_eval.py``: false positives and omissions per draft
(labels read back with the rule extractor), BLEU and ROUGE-L, bootstrap CIs, the stage-0 LM's
text-only check, and the bar chart of the variants.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("report_agent_eval")


def count_errors(pred: dict[str, int], truth: dict[str, int]) -> tuple[int, int]:
    """(false-positive findings, omitted findings) of one report; truth -1 excluded."""
    fp = sum(1 for k, t in truth.items() if t == 0 and pred[k] == 1)
    om = sum(1 for k, t in truth.items() if t == 1 and pred[k] != 1)
    return fp, om


def score(drafts: list[str], refs: list[str], truths: list[dict[str, int]]) -> dict:
    import sacrebleu
    from rouge_score import rouge_scorer

    from ml.agents.labels import extract_labels

    fps, oms = [], []
    for d, t in zip(drafts, truths, strict=True):
        fp, om = count_errors(extract_labels(d).labels, t)
        fps.append(fp)
        oms.append(om)
    rs = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = float(np.mean([rs.score(r, d)["rougeL"].fmeasure for d, r in zip(drafts, refs, strict=True)]))
    return {
        "false_positives_per_report": float(np.mean(fps)),
        "omissions_per_report": float(np.mean(oms)),
        "fp_ci95": _boot_ci(fps),
        "om_ci95": _boot_ci(oms),
        "bleu": float(sacrebleu.corpus_bleu(drafts, [refs]).score),
        "rougeL_f1": rouge,
        "fp": fps,
        "om": oms,
    }


def _boot_ci(v: list[int], n: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    a = np.asarray(v, dtype=float)
    means = [a[rng.integers(0, len(a), len(a))].mean() for _ in range(n)]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def paired_diff_ci(a: list[int], b: list[int], n: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    d = np.asarray(a, float) - np.asarray(b, float)
    means = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(n)]
    return [float(np.mean(d)), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def lm_text_check(base: Path, cfg, n: int, max_new_tokens: int) -> dict:  # type: ignore[no-untyped-def]
    """Stage 0 alone, on generated report texts it never saw (another seed), no images: drafts
    from exact agent tokens vs from no tokens. Shows whether the LM learnt to read the tokens
    before any image training (if the exact-token row is no better, nothing later can be)."""
    import torch

    from ml.agents.labels import extract_labels
    from ml.agents.report.pretrain import load_tiny_lm, text_sequence
    from ml.agents.report.prompt import similar_case_text
    from ml.data.synthetic.report_corpus import iter_report_samples

    decoder, tok = load_tiny_lm(base)
    decoder.eval()
    samples = list(iter_report_samples(n + 1, seed=10_000))
    stop = [tok.convert_tokens_to_ids(cfg.end_marker), tok.eos_token_id]
    out: dict[str, dict] = {}
    for name, agent in (("lm_exact_tokens", True), ("lm_no_tokens", False)):
        fps, oms = [], []
        for i, s in enumerate(samples[:n]):
            conds = exact_conditions(s)
            sim = similar_case_text(samples[i + 1].report) if agent else None
            ids, lab, _ = text_sequence(tok, cfg, s, conds if agent else [], sim, agent)
            prompt = ids[: next(j for j, v in enumerate(lab) if v != -100)]
            with torch.no_grad():
                gen = decoder.generate(
                    input_ids=torch.tensor([prompt]),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=stop,
                    pad_token_id=tok.pad_token_id,
                )
            text = tok.decode(gen[0, len(prompt) :], skip_special_tokens=True)
            fp, om = count_errors(extract_labels(text).labels, s.labels)
            fps.append(fp)
            oms.append(om)
        out[name] = {
            "false_positives_per_report": float(np.mean(fps)),
            "omissions_per_report": float(np.mean(oms)),
            "fp_ci95": _boot_ci(fps),
            "om_ci95": _boot_ci(oms),
        }
        log.info("%s: FP %.2f, omissions %.2f per report", name, np.mean(fps), np.mean(oms))
    out["truth_positives_per_report"] = float(np.mean([sum(v == 1 for v in s.labels.values()) for s in samples[:n]]))
    out["report_loss"] = prompt_use(decoder, tok, cfg, samples[: n + 1])
    log.info("stage-0 report loss by prompt: %s", out["report_loss"])
    return out


def exact_conditions(sample) -> list:  # type: ignore[no-untyped-def]
    """Perfect agent tokens for a generated report: its labels, and the first true site of each
    present condition as its level (one level per condition, as the localization agents give)."""
    from ml.agents.analysis import ConditionResult
    from ml.conditions import CONDITION_KEYS

    conds = [ConditionResult(k, float(sample.labels[k] == 1), sample.labels[k] == 1, 0.5) for k in CONDITION_KEYS]
    for c in conds:
        if c.present and sample.sites.get(c.condition):
            c.level, c.side = sample.sites[c.condition][0]
    return conds


def prompt_use(decoder, tok, cfg, samples: list) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Per-token loss of each report under its own exact tokens, under the NEXT report's exact
    tokens, and with none: a decoder that reads its prompt scores its own tokens clearly best."""
    import torch

    from ml.agents.report.loss import report_lm_loss
    from ml.agents.report.pretrain import text_sequence

    out: dict[str, list[float]] = {"own_tokens": [], "other_report_tokens": [], "no_tokens": []}
    for s, other in itertools.pairwise(samples):
        for name, conds, agent in (
            ("own_tokens", exact_conditions(s), True),
            ("other_report_tokens", exact_conditions(other), True),
            ("no_tokens", [], False),
        ):
            ids, lab, _ = text_sequence(tok, cfg, s, conds, None, agent)
            with torch.no_grad():
                logits = decoder(input_ids=torch.tensor([ids])).logits  # [1, T, V]
            out[name].append(float(report_lm_loss(logits, torch.tensor([lab]))))
    return {k: float(np.mean(v)) for k, v in out.items()}


def plot(results: dict, image: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["agent", "plain", "agent_oracle", "agent_other_study", "probe_calls"]
    labels = ["with agent tokens", "plain LLaVA", "agent, true tokens", "agent, another\nstudy's tokens", "probe calls"]
    fig, ax = plt.subplots(figsize=(8.5, 3.5))
    w = 0.38
    xs = np.arange(len(names))
    ax.bar(xs - w / 2, [results[n]["false_positives_per_report"] for n in names], w, label="false positives")
    ax.bar(xs + w / 2, [results[n]["omissions_per_report"] for n in names], w, label="omissions")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("findings per report")
    ax.set_title("Report drafts vs ground truth (held-out synthetic studies)")
    ax.legend()
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=110)
