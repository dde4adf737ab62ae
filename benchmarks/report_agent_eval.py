"""The paper's central report claim, measured: the Medical Report Agent WITH agent tokens vs the
same decoder WITHOUT them (plain LLaVA), on held-out generated studies, tiny decoder on CPU.

Pipeline (all on CPU, every step timed):
1. Embed every study of ``--data`` with the trained SpineFM (``--runs``/synth_conditioned/final):
   slice features of T1 and T2 series (up to ``--max-slices`` per series), cached as a pickle.
2. Patient-level split (the same 30 % held-out patients as docs/spinefm.md).
3. Diagnosis agents = per-condition logistic probes on mean slice features. Agent tokens come
   from PREDICTIONS, never from ground truth: training studies get 5-fold cross-fitted
   predictions (what a probe says about a study it did not see), held-out studies get the
   prediction of probes fitted on all training studies. Thresholds: Youden's J on the
   cross-fitted training predictions.
   Localization Agents (``--no-localize`` to leave them out): trained on the training studies'
   ground truth (every slice encoded for this, cached), they give each condition called present
   its level and side, as in the app. Runs 1-5 of docs/report-agent.md had no levels.
4. Similar case: the training study with the highest cosine similarity of mean slice features
   (never the study itself); its report is the ``<similar_case_report>``.
5. Decoder stage 0 is the cached text-only tiny LM (``ml.agents.report.pretrain``: generated
   reports with simulated agent tokens, half the prompts in each layout), shared by both
   variants; then stage 1 + 2 are trained twice from it with the same seed and steps on the
   image-bearing training studies: with agent tokens, and without.
6. Drafts for the held-out studies (greedy, ``--max-new-tokens``); labels extracted from each
   draft with the rule extractor; compared with the generator's ground-truth labels:
   false-positive findings per report (draft 1, truth 0) and omitted findings per report
   (truth 1, draft not 1); truth -1 is excluded. Plus BLEU (sacrebleu) and ROUGE-L F1.
   Reference rows: the diagnosis probes' own calls (what the agent tokens said), the agent
   model fed ground-truth tokens (an upper bound on what the tokens can carry), and the agent
   model fed ANOTHER held-out study's tokens (same layout, wrong content: if this row equals the
   agent row, the decoder is not reading its tokens and any agent-plain gap is the layout's).

    nice -n 10 .venv/bin/python benchmarks/report_agent_eval.py --out .cache/bench/report_agent

This file runs the steps and writes the summary; the data preparation (steps 1-3) is
``report_agent_eval_data.py``, the scoring and the chart ``report_agent_eval_scoring.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from report_agent_eval_data import conditions_from, diagnosis_predictions, embed_all, features, localization_sites
from report_agent_eval_scoring import count_errors, lm_text_check, paired_diff_ci, plot, score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("report_agent_eval")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO / ".cache/bench/spinefm/data")
    ap.add_argument("--runs", type=Path, default=REPO / ".cache/bench/spinefm_run2")
    ap.add_argument("--out", type=Path, default=REPO / ".cache/bench/report_agent")
    ap.add_argument("--max-slices", type=int, default=8)
    ap.add_argument("--embed-cache", type=Path, default=REPO / ".cache/bench/report_agent/embeddings_s8.pkl")
    ap.add_argument("--lm-steps", type=int, default=0, help="stage-0 LM steps (0 = the YAML's tiny_lm.steps)")
    ap.add_argument("--stage1", type=int, default=100)
    ap.add_argument("--stage2", type=int, default=500)
    ap.add_argument("--max-new-tokens", type=int, default=700)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="report-agent config override for stages 1-2, e.g. train.lr_stage2=2e-4 (repeatable)",
    )
    ap.add_argument(
        "--no-localize",
        dest="localize",
        action="store_false",
        help="leave the <localization> block empty (report-agent eval runs 1-5 did)",
    )
    ap.add_argument("--lm-check", type=int, default=30, help="generated texts for the stage-0 check (0 = skip)")
    ap.add_argument("--n-test", type=int, default=0, help="evaluate only this many held-out studies (0 = all)")
    ap.add_argument("--train", default="agent,plain", help="variants to train here (others must exist)")
    ap.add_argument(
        "--generate",
        default="agent,plain,agent_oracle,agent_other_study",
        help="variants to draft here; the others are read from OUT/partial_<variant>.json (parallel runs)",
    )
    ap.add_argument("--image", type=Path, default=REPO / "docs/images/report_agent_eval.png")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from ml.agents.report import ReportAgent, ReportExample, train_report_agent
    from ml.agents.report.pretrain import ensure_tiny_lm
    from ml.agents.report.prompt import writer_text
    from ml.agents.report.train import default_config
    from ml.conditions import CONDITION_KEYS
    from ml.data.loader import load_manifest
    from ml.data.splits import train_test_split

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rows = embed_all(args.data, args.runs, args.max_slices, args.embed_cache)
    timings["embed"] = time.perf_counter() - t0
    studies, _ = load_manifest(args.data / "manifest.jsonl")
    tr, te = train_test_split(studies, 0.3, 0)
    if args.n_test:
        te = te[: args.n_test]
    x = np.stack([features(r) for r in rows])
    y = np.stack([[r["labels"][k] for k in CONDITION_KEYS] for r in rows])

    t0 = time.perf_counter()
    prob, thr = diagnosis_predictions(x, y, tr, te)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn[tr].T  # [N, n_train]
    similar = {}
    for i in range(len(rows)):
        order = np.argsort(-sim[i])
        best = next(tr[j] for j in order if tr[j] != i)
        similar[i] = rows[best]["report"]
    timings["diagnosis+retrieval"] = time.perf_counter() - t0

    sites: dict = {"pred": [{}] * len(rows), "truth": [{}] * len(rows)}
    if args.localize:
        t0 = time.perf_counter()
        sites = localization_sites(args.data, args.runs, tr, prob, thr, args.out / "localization.json")
        timings["localization"] = time.perf_counter() - t0

    def example(i: int, tokens: str = "predicted") -> ReportExample:
        """``tokens``: "predicted" (the agents'), "truth" (ground-truth labels and levels) or
        "other" (the agents' tokens of ANOTHER held-out study: same layout, wrong content)."""
        r = rows[i]
        if tokens == "truth":
            exact = np.array([float(r["labels"][k] == 1) for k in CONDITION_KEYS])
            conds = conditions_from(exact, np.full(len(CONDITION_KEYS), 0.5), sites["truth"][i])
        elif tokens == "other":
            j = te[(te.index(i) + 1) % len(te)]
            conds = conditions_from(prob[j], thr, sites["pred"][j])
        else:
            conds = conditions_from(prob[i], thr, sites["pred"][i])
        return ReportExample(
            t1_slices=r["t1"],
            t2_slices=r["t2"],
            conditions=conds,
            similar_report=similar[i],
            region=r["region"],
            target=r["report"],
        )

    train_ex = [example(i) for i in tr]
    import yaml

    cfg = default_config("tiny")
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, leaf = key.partition(".")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML reads "2e-4" as a string
            with contextlib.suppress(ValueError):
                parsed = float(parsed)
        setattr(getattr(cfg, section) if leaf else cfg, leaf or section, parsed)
    if args.lm_steps:
        cfg.tiny_lm.steps = args.lm_steps
    t0 = time.perf_counter()
    base = ensure_tiny_lm(cfg)  # trained once per configuration, then read from the cache
    timings["stage0"] = time.perf_counter() - t0
    lm_meta = json.loads((base / "meta.json").read_text())
    lm_check_file = base / f"text_check_{args.lm_check}.json"
    if args.lm_check and not lm_check_file.exists():
        t0 = time.perf_counter()
        lm_check_file.write_text(json.dumps(lm_text_check(base, cfg, args.lm_check, args.max_new_tokens)))
        timings["stage0_text_check"] = time.perf_counter() - t0
    lm_check = json.loads(lm_check_file.read_text()) if lm_check_file.exists() else {}
    folders = {}
    for name, flag in (("agent", True), ("plain", False)):
        folder = args.out / name
        t0 = time.perf_counter()
        if name in args.train.split(",") and not (folder / "adapter").exists():
            train_report_agent(
                train_ex,
                folder,
                stage1_steps=args.stage1,
                stage2_steps=args.stage2,
                use_agent_tokens=flag,
                config=dataclasses.replace(cfg),
                init_from=base,
            )
        timings[f"train_{name}"] = time.perf_counter() - t0
        folders[name] = folder

    refs = [writer_text(rows[i]["report"]) for i in te]  # the part the writer writes
    truths = [rows[i]["labels"] for i in te]
    results: dict[str, dict] = {}
    drafts_all: dict[str, list[str]] = {}
    variants = (
        ("agent", "agent", "predicted", True),
        ("plain", "plain", "predicted", False),
        ("agent_oracle", "agent", "truth", True),
        ("agent_other_study", "agent", "other", True),
    )
    for label, folder_name, tokens, flag in variants:
        partial = args.out / f"partial_{label}.json"
        if label not in args.generate.split(","):
            if not partial.exists():
                log.info("variant %s: neither generated here nor found in %s", label, partial)
                continue
            saved = json.loads(partial.read_text())
            if saved["test"] != te:
                raise SystemExit(f"{partial} was made for other test studies")
            drafts_all[label] = saved.pop("drafts")
            saved.pop("test")
            results[label] = saved
            continue
        agent = ReportAgent.load(folders[folder_name])
        t0 = time.perf_counter()
        drafts, ntok = [], []
        for n, i in enumerate(te):
            ex = dataclasses.replace(example(i, tokens), use_agent_tokens=flag)
            g = agent.generate(ex, max_new_tokens=args.max_new_tokens)
            drafts.append(g.text)
            ntok.append(g.tokens)
            if (n + 1) % 10 == 0:
                log.info("%s: %d/%d drafts (%.1f s)", label, n + 1, len(te), time.perf_counter() - t0)
        timings[f"generate_{label}"] = time.perf_counter() - t0
        results[label] = score(drafts, refs, truths)
        results[label]["mean_tokens"] = float(np.mean(ntok))
        drafts_all[label] = drafts
        args.out.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"test": te, "drafts": drafts, **results[label]}))
    if len(results) < len(variants):
        log.info("not all variants drafted yet (%s): no summary", sorted(results))
        return
    # what the agent tokens themselves said (the diagnosis probes' calls)
    probe_fp, probe_om = [], []
    for i in te:
        calls = {k: int(prob[i, j] >= thr[j]) for j, k in enumerate(CONDITION_KEYS)}
        fp, om = count_errors(calls, rows[i]["labels"])
        probe_fp.append(fp)
        probe_om.append(om)
    results["probe_calls"] = {
        "false_positives_per_report": float(np.mean(probe_fp)),
        "omissions_per_report": float(np.mean(probe_om)),
        "fp": probe_fp,
        "om": probe_om,
    }
    results["paired_agent_minus_plain"] = {
        "fp": paired_diff_ci(results["agent"]["fp"], results["plain"]["fp"]),
        "om": paired_diff_ci(results["agent"]["om"], results["plain"]["om"]),
    }
    # same model and layout, the study's own tokens vs another study's: what the CONTENT does
    results["paired_agent_minus_other_study"] = {
        "fp": paired_diff_ci(results["agent"]["fp"], results["agent_other_study"]["fp"]),
        "om": paired_diff_ci(results["agent"]["om"], results["agent_other_study"]["om"]),
    }
    results["truth_positives_per_report"] = float(np.mean([sum(v == 1 for v in t.values()) for t in truths]))
    out = {
        "n_train": len(tr),
        "n_test": len(te),
        "steps": {"stage0": cfg.tiny_lm.steps, "stage1": args.stage1, "stage2": args.stage2},
        "stage0_lm": {
            "folder": str(base),
            "seconds": lm_meta["seconds"],
            "final_loss": lm_meta["final_loss"],
            "text_check": lm_check,
        },
        "timings_s": timings,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report_agent_eval.json").write_text(json.dumps(out, indent=2))
    (args.out / "drafts.json").write_text(json.dumps({"refs": refs, **drafts_all}, indent=2))
    print(
        f"held-out studies: {len(te)} (train {len(tr)}); truth positives/report "
        f"{results['truth_positives_per_report']:.2f}"
    )
    for k in ("lm_exact_tokens", "lm_no_tokens"):
        if k in lm_check:
            r = lm_check[k]
            print(
                f"stage-0 LM, text only, {k}: FP {r['false_positives_per_report']:.2f}, omissions "
                f"{r['omissions_per_report']:.2f} per report ({args.lm_check} generated reports)"
            )
    print(f"{'variant':<16}{'FP/report':>10}{'omit/report':>12}{'BLEU':>8}{'ROUGE-L':>9}")
    for k in ("agent", "plain", "agent_oracle", "agent_other_study", "probe_calls"):
        r = results[k]
        print(
            f"{k:<16}{r['false_positives_per_report']:>10.2f}{r['omissions_per_report']:>12.2f}"
            f"{r.get('bleu', float('nan')):>8.2f}{r.get('rougeL_f1', float('nan')):>9.3f}"
        )
    for key, what in (("paired_agent_minus_plain", "agent - plain"), ("paired_agent_minus_other_study", "own - other")):
        p = results[key]
        print(
            f"{what}, mean [95% CI]: FP {p['fp'][0]:+.2f} [{p['fp'][1]:+.2f}, {p['fp'][2]:+.2f}]; "
            f"omissions {p['om'][0]:+.2f} [{p['om'][1]:+.2f}, {p['om'][2]:+.2f}]"
        )
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})
    plot(results, args.image)


if __name__ == "__main__":
    main()
