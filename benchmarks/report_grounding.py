"""Are the drafts grounded? The writer's draft and the grounded draft, side by side, on held-out
generated studies through the real pipeline.

    nice -n 10 .venv/bin/python benchmarks/report_grounding.py --studies 40
    .venv/bin/python benchmarks/report_grounding.py --pipeline DEMO --data HELD_OUT --studies 20 \
        --report-agent .cache/bench/report_claim/agent      # a gemma-3-270m writer

Steps: ``ml synth --fast`` studies with a seed the tiny pipeline never trained on; each study as
the drafting worker has it (pydicom datasets -> ``study_from_datasets``), its facts from its
headers (``study_facts_from_datasets``) and from an archive of every generated study plus a
simulated earlier study for one patient in four (searched by PatientID, as Orthanc is);
``Pipeline.analyze_many`` with those facts. The analysis keeps the writer's text
(``report_check["written"]``), so both are scored from one run:

- contradictions per report between the draft and the pipeline's own calls: a condition called
  present and not stated, or called absent and stated (label extractor on the whole draft), plus
  each sentence that states a present condition at a level other than the Localization Agent's,
  plus each sentence that denies a present condition at no level or at the agent's level ("No
  canal stenosis detected." while another section states it: the whole-draft reading misses it);
- drafts with an invented fact: a CLINICAL HISTORY with anything but the DICOM request text and
  the patient's age/sex (any other age counts), a COMPARISON naming a study the archive does not
  have, a TECHNIQUE contradicting the recorded contrast;
- distinct drafts: identical texts among studies whose calls differ (pairs), and the share of
  studies whose findings + impression differ from those of every study with other calls;
- against the generator's truth: false positives and omissions per report (truth -1 excluded)
  of the writer, the grounded draft and a plain transcription of the agents' calls;
- seconds per study: the report step (writer) and the grounding step;
- the writer's drafts in its own tokens: how many end under the draft budget, and how many
  tokens the references' factual sections take (what a writer that wrote them spent there).
  ``--recount DUMP`` prints these for another run's ``--dump`` without drafting again.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load(data: Path, limit: int | None = None) -> list[dict]:
    import pydicom

    from ml.data.manifest import read_manifest

    out = []
    for entry in list(read_manifest(data / "manifest.jsonl"))[:limit]:
        series = {
            s.series_uid: [pydicom.dcmread(f) for f in sorted((data / s.path).glob("*.dcm"))] for s in entry.series
        }
        out.append({"uid": entry.study_uid, "series": series, "labels": entry.labels, "region": entry.region,
                    "report": entry.report or ""})  # fmt: skip
    return out


def archive_for(studies: list[dict]) -> dict[str, list]:
    """PatientID -> the archive's studies of that patient: every generated study, and for one
    patient in four an earlier study (what a QIDO-RS search by PatientID returns)."""
    from ml.agents.report.facts import PriorStudy

    out: dict[str, list] = {}
    for i, s in enumerate(studies):
        ds = next(iter(s["series"].values()))[0]
        pid, date = str(ds.PatientID), str(ds.StudyDate)
        out.setdefault(pid, []).append(PriorStudy(s["uid"], date, str(ds.StudyDescription), str(ds.StudyTime)))
        if i % 4 == 0:
            earlier = f"{int(date[:4]) - 2}{date[4:]}"
            out[pid].append(PriorStudy(f"{s['uid']}.9", earlier, "MRI LUMBAR SPINE", "090000"))
    return out


# ----- scoring -------------------------------------------------------------------------------------


# negation cues of a denial (kept here, apart from the consistency check's own, so the benchmark
# does not grade the check with the check's reading)
_DENIAL = re.compile(r"\b(no evidence of|there is no|there are no|without|negative for|no|not)\b", re.I)


def contradictions(text: str, conds: list) -> tuple[int, int, int]:
    """(condition disagreements, sentences with a level other than the agent's, sentences that
    deny a present condition at no level or at the agent's level)."""
    from ml.agents.labels import extract_labels
    from ml.agents.report.prompt import split_sections
    from ml.agents.report.sentences import level_spans, same_level

    labels = extract_labels(text).labels
    by_key = {c.condition: c for c in conds}
    calls = sum((by_key[k].present if k in by_key else False) != (v != 0) for k, v in labels.items())
    wrong_level = denied = 0
    for title, body in split_sections(text).items():
        if title in ("", "CLINICAL HISTORY", "TECHNIQUE", "COMPARISON"):
            continue
        for line in body.splitlines():
            label = re.match(r"^\s*([CTLS]\d{1,2}(?:\s*[-/]\s*[CTLS]?\d{1,2})?)\s*:", line)
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", re.sub(r"^\s*\d+[.)]\s+", "", line.strip())):
                said = [k for k, v in extract_labels(s).labels.items() if v != 0]
                levels = [lv for *_, lv in level_spans(s)] or ([level_spans(label.group(1))[0][2]] if label else [])
                for k in said:
                    c = by_key.get(k)
                    if c is not None and c.present and c.level and levels:
                        agent = level_spans(c.level)[0][2] if level_spans(c.level) else c.level
                        wrong_level += any(not same_level(lv, agent) for lv in levels)
                for k, v in extract_labels(_DENIAL.sub(" ", s)).labels.items():
                    c = by_key.get(k)
                    if v == 0 or k in said or c is None or not c.present:
                        continue
                    agent = level_spans(c.level)[0][2] if c.level and level_spans(c.level) else ""
                    denied += not levels or not agent or any(same_level(lv, agent) for lv in levels)
    return calls, wrong_level, denied


def invented(text: str, facts) -> list[str]:  # type: ignore[no-untyped-def]
    """Which factual sections state something the data does not (independent of facts.py)."""
    from ml.agents.report.prompt import split_sections

    sec = split_sections(text)
    out = []
    age_m = re.fullmatch(r"0*(\d+)Y", facts.patient_age or "")
    age = age_m.group(1) if age_m else ""
    sex = {"F": "female", "M": "male"}.get(facts.patient_sex, "")
    hist = sec.get("CLINICAL HISTORY", "")
    rest = hist.replace("[No clinical history provided — please add]", "")
    for known in (facts.reason, facts.additional_history, facts.admitting_diagnoses):
        for part in filter(None, (known or "").split("; ")):
            rest = rest.replace(part.rstrip("."), "")
    rest = re.sub(rf"\b{age}-year-old {sex}\b", "", rest, flags=re.IGNORECASE) if age and sex else rest
    rest = re.sub(r"\bPatient\b", "", rest)
    if re.sub(r"[\s.;:,]", "", rest) or any(n != age for n in re.findall(r"\b\d{1,3}\b", rest)):
        out.append("history")
    comp = sec.get("COMPARISON", "").strip()
    dates = {f"{p.date[:4]}-{p.date[4:6]}-{p.date[6:]}" for p in facts.priors or []}
    said = set(re.findall(r"\d{4}-\d{2}-\d{2}", comp))
    # a section left unwritten invents nothing (the writer writes from ALIGNMENT on)
    if (not dates and comp and not comp.lower().startswith("none")) or (said - dates) or (dates and not said and comp):
        out.append("comparison")
    tech = sec.get("TECHNIQUE", "").lower()
    contrast = any(s.contrast for s in facts.series)
    if ("without" in tech and "contrast" in tech and contrast) or (
        ("after" in tech or "gadolinium" in tech) and not contrast
    ):
        out.append("technique")
    return out


SECTIONS = ("history", "comparison", "technique")


def truth_errors(pred: dict[str, int], truth: dict[str, int]) -> tuple[int, int]:
    fp = sum(1 for k, t in truth.items() if t == 0 and pred.get(k, 0) == 1)
    om = sum(1 for k, t in truth.items() if t == 1 and pred.get(k, 0) != 1)
    return fp, om


def findings_part(text: str) -> str:
    from ml.agents.report.prompt import split_sections
    from ml.conditions import FACT_SECTIONS

    sec = split_sections(text)
    return "\n".join(f"{k}: {v}" for k, v in sec.items() if k and k not in FACT_SECTIONS)


def token_figures(tokenizer, written: list[str], references: list[str], budget: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The writer's drafts in its own tokens (re-tokenized text: a draft cut at the budget comes
    back within a few tokens of it, so "ended" means more than 5 under it), and the tokens of the
    reference reports' factual sections (what a writer that wrote them spent of its budget)."""
    from ml.agents.report.prompt import writer_text

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    drafts = [count(t) for t in written]
    facts = [count(r.strip()) - count(writer_text(r)) for r in references if r.strip()]
    return {
        "budget": budget,
        "writer_tokens": drafts,
        "writer_ended_under_budget": sum(n < budget - 5 for n in drafts),
        "reference_fact_tokens": sorted(facts),
    }


def distinct(texts: list[str], signatures: list[tuple]) -> tuple[int, float]:
    """(pairs with different calls and identical text, share of studies whose text differs from
    every study with other calls)."""
    n = len(texts)
    same = sum(
        1 for i, j in itertools.combinations(range(n), 2) if signatures[i] != signatures[j] and texts[i] == texts[j]
    )
    ok = [all(texts[i] != texts[j] for j in range(n) if signatures[j] != signatures[i]) for i in range(n)]
    return same, sum(ok) / max(n, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=40)
    ap.add_argument("--seed", type=int, default=29, help="generator seed (the tiny pipeline trains on seed 3)")
    ap.add_argument("--pipeline", help="pipeline folder (default: the cached tiny pipeline)")
    ap.add_argument("--data", type=Path, help="a generated folder with manifest.jsonl (default: generate)")
    ap.add_argument("--report-agent", type=Path, help="draft with this trained writer instead of the pipeline's")
    ap.add_argument("--out", type=Path, default=Path(".cache/bench/report_grounding.json"))
    ap.add_argument("--dump", type=Path, help="write every draft (as written, as grounded) and its calls to this JSONL")
    ap.add_argument("--recount", type=Path, help="only print the token figures of this --dump (no drafting)")
    a = ap.parse_args()
    if a.recount:
        if not a.pipeline:
            ap.error("--recount needs --pipeline (whose writer's tokenizer counts)")
        return recount(a.recount, a.pipeline, a.data, a.studies)

    import torch

    from ml.agents.bootstrap import ensure_tiny_pipeline
    from ml.agents.labels import extract_labels
    from ml.agents.pipeline import Pipeline
    from ml.agents.report.facts import study_facts_from_datasets
    from ml.data.dicom_adapter import study_from_datasets

    folder = a.pipeline or str(ensure_tiny_pipeline())
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = a.data
        if data is None:
            data = Path(tmp)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ml", "synth", "--studies", str(a.studies), "--seed", str(a.seed),
                            "--out", tmp, "--fast"], check=True, capture_output=True)  # fmt: skip
            print(f"generated {a.studies} studies (seed {a.seed}) in {time.perf_counter() - t0:.0f} s")
        studies = load(data, a.studies)
        archive = archive_for(studies)
        pipeline = Pipeline.load(folder)
        if a.report_agent:  # e.g. a gemma-3-270m writer (benchmarks/report_claim.py trains one)
            from ml.agents.report import ReportAgent

            pipeline.agents["report"] = ReportAgent.load(a.report_agent)
        prepared, facts = [], []
        for s in studies:
            prepared.append(study_from_datasets(s["uid"], s["series"], pipeline.preprocess))
            pid = str(next(iter(s["series"].values()))[0].PatientID)
            facts.append(study_facts_from_datasets(s["series"], archive.get(pid, [])))
        t0 = time.perf_counter()
        results = pipeline.analyze_many([p[0] for p in prepared], [p[1] for p in prepared], facts)
        analyze_s = time.perf_counter() - t0

    rows = {"writer": [], "grounded": []}
    for s, r, f in zip(studies, results, facts, strict=True):
        written = r.report_check.get("written", r.report_text)
        for name, text in (("writer", written), ("grounded", r.report_text)):
            calls, levels, denied = contradictions(text, r.conditions)
            labels = extract_labels(text).labels
            fp, om = truth_errors(labels, s["labels"])
            rows[name].append({"calls": calls, "levels": levels, "denied": denied, "invented": invented(text, f),
                               "fp": fp, "om": om,
                               "text": text, "findings": findings_part(text)})  # fmt: skip
    if a.dump:  # every draft as written and as grounded, with the calls, for reading the failures
        with a.dump.open("w") as fh:
            for s, r, w, g in zip(studies, results, rows["writer"], rows["grounded"], strict=True):
                calls = [[c.condition, c.level, c.side, round(c.probability, 2)] for c in r.conditions if c.present]
                fh.write(json.dumps({"study": s["uid"], "calls": calls, "writer": w["text"], "grounded": g["text"],
                                     "level_contradictions": g["levels"], "check": r.report_check}) + "\n")  # fmt: skip
    transcription = [truth_errors({c.condition: int(c.present) for c in r.conditions}, s["labels"])
                     for s, r in zip(studies, results, strict=True)]  # fmt: skip
    signatures = [tuple(sorted((c.condition, c.level, c.side) for c in r.conditions if c.present)) for r in results]
    n = len(results)
    report_s = [next((x.seconds for x in r.agents if x.name == "report"), 0.0) for r in results]
    ground_s = [float(r.report_check.get("seconds", 0.0)) for r in results]
    actions: dict[str, int] = {}
    for r in results:
        for c in r.report_check.get("changes", []):
            actions[c["action"]] = actions.get(c["action"], 0) + 1
    summary: dict[str, object] = {
        "studies": n, "seed": a.seed, "pipeline": folder, "sources": sorted({r.report_source for r in results}),
        "present_per_report": sum(len(sg) for sg in signatures) / n,
        "changes_per_report": {k: v / n for k, v in sorted(actions.items())},
        "residual_reports": sum(bool(r.report_check.get("residual")) for r in results),
        "report_s_mean": sum(report_s) / n, "grounding_s_mean": sum(ground_s) / n, "analyze_s": analyze_s,
        "transcription_fp": sum(t[0] for t in transcription) / n,
        "transcription_om": sum(t[1] for t in transcription) / n,
    }  # fmt: skip
    for name, rs in rows.items():
        pairs, share = distinct([x["text"] for x in rs], signatures)
        fpairs, fshare = distinct([x["findings"] for x in rs], signatures)
        summary[name] = {
            "contradictions_per_report": sum(x["calls"] + x["levels"] + x["denied"] for x in rs) / n,
            "condition_contradictions_per_report": sum(x["calls"] for x in rs) / n,
            "level_contradictions_per_report": sum(x["levels"] for x in rs) / n,
            "denials_per_report": sum(x["denied"] for x in rs) / n,
            "drafts_with_invented_fact": sum(bool(x["invented"]) for x in rs),
            "invented_by_section": {k: sum(k in x["invented"] for x in rs) for k in SECTIONS},
            "distinct_texts": len({x["text"] for x in rs}),
            "identical_pairs_with_different_calls": pairs,
            "distinct_rate": share,
            "identical_findings_pairs_with_different_calls": fpairs,
            "distinct_findings_rate": fshare,
            "fp_per_report": sum(x["fp"] for x in rs) / n,
            "omissions_per_report": sum(x["om"] for x in rs) / n,
        }  # fmt: skip
    writer = pipeline.agents.get("report")
    if getattr(writer, "tokenizer", None) is not None:
        summary["tokens"] = token_figures(
            writer.tokenizer, [x["text"] for x in rows["writer"]], [s["report"] for s in studies],
            pipeline.cfg.max_new_tokens,
        )  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(summary, indent=2))

    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"pipeline: {folder} (draft source: {', '.join(summary['sources'])}); device: {device}")
    print(f"{n} held-out studies, {summary['present_per_report']:.2f} conditions called present per report, "
          f"{len(set(signatures))} distinct sets of calls")  # fmt: skip
    print(f"{'':<44}{'writer':>10}{'grounded':>10}")
    w, g = summary["writer"], summary["grounded"]
    for label, key, fmt in (
        ("contradictions with the pipeline / report", "contradictions_per_report", "{:.2f}"),
        ("  of which conditions", "condition_contradictions_per_report", "{:.2f}"),
        ("  of which levels", "level_contradictions_per_report", "{:.2f}"),
        ("  of which sentences denying a present call", "denials_per_report", "{:.2f}"),
        ("drafts with an invented fact", "drafts_with_invented_fact", "{}"),
        ("distinct texts", "distinct_texts", "{}"),
        ("identical pairs with different calls", "identical_pairs_with_different_calls", "{}"),
        ("distinct-draft rate", "distinct_rate", "{:.0%}"),
        ("distinct findings+impression rate", "distinct_findings_rate", "{:.0%}"),
        ("false positives / report vs truth", "fp_per_report", "{:.2f}"),
        ("omissions / report vs truth", "omissions_per_report", "{:.2f}"),
    ):
        print(f"{label:<44}{fmt.format(w[key]):>10}{fmt.format(g[key]):>10}")  # type: ignore[index]
    print(f"invented by section (writer): {w['invented_by_section']}; grounded: {g['invented_by_section']}")  # type: ignore[index]
    print(f"transcription of the agents' calls vs truth: FP {summary['transcription_fp']:.2f}, "
          f"omissions {summary['transcription_om']:.2f} per report")  # fmt: skip
    print(f"check changes per report: {', '.join(f'{k} {v:.2f}' for k, v in summary['changes_per_report'].items())}; "
          f"reports with a residual disagreement: {summary['residual_reports']}")  # type: ignore[union-attr]  # fmt: skip
    print(f"seconds per study: report step {summary['report_s_mean']:.2f}, "
          f"grounding {summary['grounding_s_mean']:.3f}; "
          f"analyze_many total {analyze_s:.0f} s")  # fmt: skip
    if "tokens" in summary:
        print_tokens(summary["tokens"])  # type: ignore[arg-type]
    print(f"load average (1 min): {load0:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs")
    print(f"written {a.out}")
    return 0


def print_tokens(t: dict) -> None:
    n, facts = t["writer_tokens"], t["reference_fact_tokens"]
    median = sorted(n)[len(n) // 2]
    print(f"writer drafts ending more than 5 tokens under the {t['budget']}-token budget: "
          f"{t['writer_ended_under_budget']} of {len(n)} (tokens {min(n)}-{max(n)}, median {median})")  # fmt: skip
    if facts:
        print(f"the references' clinical history + technique + comparison: median {facts[len(facts) // 2]} tokens "
              f"({facts[0]}-{facts[-1]}) of the writer's tokenizer")  # fmt: skip


def recount(dump: Path, pipeline: str, data: Path | None, limit: int) -> int:
    """``--recount DUMP``: the token figures of a dump written by ``--dump`` (another tree's run),
    with this pipeline's writer tokenizer and budget, without drafting again."""
    from ml.agents.pipeline import Pipeline
    from ml.data.manifest import read_manifest

    pipe = Pipeline.load(pipeline)
    writer = pipe.agents.get("report")
    if getattr(writer, "tokenizer", None) is None:
        raise SystemExit(f"{pipeline} has no report agent with a tokenizer")
    written = [json.loads(line)["writer"] for line in dump.read_text().splitlines() if line.strip()]
    refs = [e.report or "" for e in list(read_manifest(data / "manifest.jsonl"))[:limit]] if data else []
    print(f"{dump}:")
    print_tokens(token_figures(writer.tokenizer, written, refs, pipe.cfg.max_new_tokens))  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
