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
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("report_agent_eval")


def embed_all(data: Path, runs: Path, max_slices: int, cache: Path) -> list[dict]:
    """Per study: T1/T2 slice features, report, labels, region, patient key (cached)."""
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    import torch

    from ml.data.cache import SliceCache
    from ml.data.datasets import subsample_indices
    from ml.data.loader import StudyLoader, load_manifest
    from ml.data.preprocess import PreprocessConfig
    from ml.spinefm.embed import embed_studies
    from ml.spinefm.io import load_spinefm

    torch.set_num_threads(2)
    studies, base = load_manifest(data / "manifest.jsonl")
    model = load_spinefm(runs / "synth_conditioned" / "final")
    loader = StudyLoader(base, PreprocessConfig(size=model.img_size), SliceCache(runs / "cache"))
    out: list[dict] = []
    t0 = time.perf_counter()
    for i in range(0, len(studies), 16):
        chunk = []
        for st in studies[i : i + 16]:
            d = loader.load(st, classes=("T1", "T2"))
            for s in d.series:
                s.pixels = s.pixels[subsample_indices(len(s.pixels), max_slices)]
            chunk.append((st, d))
        embs = embed_studies([d for _, d in chunk], model, batch_size=256)
        for (st, _), e in zip(chunk, embs, strict=True):
            out.append(
                {
                    "patient_key": st.patient_key,
                    "region": st.region or "lumbar",
                    "report": st.report or "",
                    "labels": dict(st.labels),
                    "t1": [s.slices.astype(np.float32) for s in e.series if s.sequence_class == "T1"],
                    "t2": [s.slices.astype(np.float32) for s in e.series if s.sequence_class == "T2"],
                }
            )
        log.info("embedded %d/%d studies (%.1f s)", len(out), len(studies), time.perf_counter() - t0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    return out


def features(row: dict) -> np.ndarray:
    """Mean slice features of T1 and of T2, concatenated [2 * D]."""
    d = (row["t1"] or row["t2"])[0].shape[1]
    parts = [np.concatenate(row[c]).mean(0) if row[c] else np.zeros(d, np.float32) for c in ("t1", "t2")]
    return np.concatenate(parts)


def diagnosis_predictions(x: np.ndarray, y: np.ndarray, tr: list[int], te: list[int], seed: int = 0):
    """Cross-fitted probabilities for training rows, full-fit ones for test rows, thresholds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    n, k = y.shape
    prob = np.zeros((n, k))
    thr = np.full(k, 0.5)

    def fit_predict(a: list[int], b: list[int], j: int) -> np.ndarray:
        a = [i for i in a if y[i, j] >= 0]
        if len({int(y[i, j]) for i in a}) < 2:
            return np.full(len(b), float(np.mean([y[i, j] == 1 for i in a]) if a else 0.0))
        sc = StandardScaler().fit(x[a])
        clf = LogisticRegression(C=0.1, max_iter=3000).fit(sc.transform(x[a]), y[a, j])
        return clf.predict_proba(sc.transform(x[b]))[:, 1]

    folds = list(KFold(5, shuffle=True, random_state=seed).split(tr))
    for j in range(k):
        for a_idx, b_idx in folds:
            a = [tr[i] for i in a_idx]
            b = [tr[i] for i in b_idx]
            prob[b, j] = fit_predict(a, b, j)
        prob[te, j] = fit_predict(tr, te, j)
        m = [i for i in tr if y[i, j] >= 0]
        yy, pp = (y[m, j] == 1), prob[m, j]
        if 0 < yy.sum() < len(yy):
            cands = np.unique(pp)
            j_stat = [(pp[yy] >= t).mean() - (pp[~yy] >= t).mean() for t in cands]
            thr[j] = float(cands[int(np.argmax(j_stat))])
    return prob, thr


def conditions_from(prob_row: np.ndarray, thr: np.ndarray, sites: dict | None = None):  # type: ignore[no-untyped-def]
    """The diagnosis calls as the agents return them; ``sites`` (condition -> [level, side]) adds
    the localization agents' level and side to the conditions called present."""
    from ml.agents.analysis import ConditionResult
    from ml.conditions import CONDITION_KEYS

    out = [
        ConditionResult(k, float(prob_row[j]), bool(prob_row[j] >= thr[j]), float(thr[j]))
        for j, k in enumerate(CONDITION_KEYS)
    ]
    for c in out:
        if c.present and sites and c.condition in sites:
            c.level, c.side = sites[c.condition]
    return out


def localization_sites(
    data: Path, runs: Path, tr: list[int], prob: np.ndarray, thr: np.ndarray, cache: Path
) -> dict[str, list[dict[str, list[str]]]]:
    """Levels and sides for the <localization> tokens, per study: ``pred`` from the Localization
    Agents (``ml.agents.localization``, trained on the training studies' ground truth and applied to
    each study's conditions the probes call present, as the app's pipeline does) and ``truth``
    (the first present finding of each condition, for the ground-truth-token row). Cached as JSON:
    it needs every slice of every study encoded (the report rows keep only 8 per series)."""
    calls = (prob >= thr).astype(int).tolist()  # what gets localised: a changed probe run invalidates the cache
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("train") == list(tr) and saved.get("calls") == calls:
            return saved
        log.info("localization cache %s was made for other studies or calls: recomputing", cache)
    from ml.agents.localization import train_localization
    from ml.agents.train import prepare

    t0 = time.perf_counter()
    prep = prepare(data / "manifest.jsonl", runs / "synth_conditioned" / "final", cache_dir=runs / "cache")
    log.info("localization: %d studies encoded (%.1f s)", len(prep.feats), time.perf_counter() - t0)
    loc = train_localization([prep.feats[i] for i in tr], [prep.truths[i] for i in tr])
    log.info("localization agents trained on %d studies (%.1f s)", len(tr), time.perf_counter() - t0)
    pred, truth = [], []
    for i, feat in enumerate(prep.feats):
        called = [c for c in conditions_from(prob[i], thr) if c.present]
        loc.localize(feat, called)
        pred.append({c.condition: [c.level, c.side or ""] for c in called if c.level})
        first: dict[str, list[str]] = {}
        for f in (prep.truths[i] or {}).get("findings", []):
            if f["label"] == 1 and f.get("level"):
                first.setdefault(f["condition"], [f["level"], f.get("side") or ""])
        truth.append(first)
    out = {"pred": pred, "truth": truth, "train": list(tr), "calls": calls, "seconds": time.perf_counter() - t0}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


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

    refs = [rows[i]["report"] for i in te]
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


if __name__ == "__main__":
    main()
