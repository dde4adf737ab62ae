"""``python -m ml agents evaluate --pipeline DIR --manifest M``: the served pipeline on held-out studies.

Why a second protocol beside the cross-validated one in ``ml.agents.evaluate``: what a
radiologist sees is one trained pipeline folder (the one ``scripts/demo`` builds, or a site's),
run through ``Pipeline.analyze_many`` on studies read as the drafting worker reads them
(pydicom datasets -> ``study_from_datasets``, classification included). Measuring that object,
not a re-fitted probe, is the only way "what a new user sees is what is measured" holds.

The manifest must come from generator seeds the pipeline never trained on (the pipeline folder
records its training data in ``bootstrap.json`` / ``split.json``). Figures, each with a 95 %
percentile CI over patients resampled (``bootstrap_ci``):

* **Diagnosis**: AUROC per condition (labels -1 left out) and the mean over the conditions that
  have both classes; the same mean per vendor (manufacturer style of the generated study).
* **Localization**, over true positives called present (truth label 1, ``present``): level
  accuracy (the agent's level is a level of a present finding of that condition), side accuracy
  (where the truth has a left/right/bilateral/central side), and box IoU on the key slice (a box
  on a slice that is not one of the finding's key slices scores 0). Beside it, the mean-box
  priors, both the mean normalised truth box of that condition and series kind over the *other*
  held-out studies: placed on the true key slice (an oracle slice, so a generous baseline), and
  placed as an agent without images would place it (``_slice_prior``: the condition's most
  frequent series kind and median relative slice position in the other studies), scored by the
  agent's own rule (0 off the finding's key slices). The second is the fair reference for the
  agent's IoU, which includes choosing the slice; the first isolates the box's shape.
* **Retrieval**: study -> report Recall@1/5/10 over an index of the held-out studies themselves
  (their generated reports), built with the pipeline's own SpineFM.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.agents.cell_levels import finding_levels
from ml.agents.metrics import auroc, bootstrap_ci, box_iou, ranks_of_truth, recall_at
from ml.agents.slice_retrieval import sagittal_to_axial, sagittal_to_axial_summary
from ml.conditions import CONDITION_KEYS

if TYPE_CHECKING:
    from ml.agents.pipeline import Pipeline
    from ml.data.manifest import StudyEntry

log = logging.getLogger(__name__)
SIDES = ("left", "right", "bilateral", "central")


def read_study(base: Path, entry: StudyEntry) -> tuple[str, dict[str, list]]:
    import pydicom

    series: dict[str, list] = {}
    for s in entry.series:
        files = sorted((base / s.path).glob("*.dcm")) if s.path else []
        series[s.series_uid] = [pydicom.dcmread(f) for f in files]
    return entry.study_uid, series


def _mean_auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Mean over conditions of the per-condition AUROC. y, p: [N, K] (y -1 = excluded)."""
    vals = []
    for k in range(y.shape[1]):
        m = y[:, k] >= 0
        if len(np.unique(y[m, k])) == 2:
            vals.append(auroc(y[m, k], p[m, k]))
    return float(np.mean(vals)) if vals else float("nan")


def _mean_auroc_ci(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n: int) -> list[float]:
    """``_mean_auroc`` with its patient-bootstrap CI (whole patients resampled)."""
    return list(bootstrap_ci(y, p, _mean_auroc, n=n, groups=groups))


def _share_ci(hits: list[float], groups: list[str], n: int) -> list[float]:
    if not hits:
        return [float("nan")] * 3
    h = np.asarray(hits, float)
    point, lo, hi = bootstrap_ci(h, h, lambda y, _p: float(np.mean(y)), n=n, groups=np.asarray(groups))
    return [point, lo, hi]


def _truth_index(truth: dict) -> dict[str, Any]:
    """condition -> present findings [{level, levels, side, slices: {sop_uid: box_norm}, kinds: {sop: key}}]."""
    out: dict[str, list[dict]] = defaultdict(list)
    for f in truth.get("findings", []):
        if f.get("label") != 1:
            continue
        slices, kinds, index = {}, {}, {}
        for skey, items in f.get("key_slices", {}).items():
            for ks in items:
                slices[ks["sop_instance_uid"]] = ks["box_norm"]
                kinds[ks["sop_instance_uid"]] = skey
                index[ks["sop_instance_uid"]] = ks.get("index", -1)
        out[f["condition"]].append(
            {
                "level": f.get("level") or "",
                "levels": finding_levels(f),
                "side": f.get("side"),
                "slices": slices,
                "kinds": kinds,
                "index": index,
            }
        )
    return out


def _key_slice_positions(rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, str, float]]]:
    """condition -> (study row, series kind, relative slice position 0..1) of every key slice of
    its present findings (the position within the series, so that series of 15 and 17 slices compare)."""
    out: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
    for i, r in enumerate(rows):
        n_slices = {s["key"]: int(s.get("n_slices") or 0) for s in r["truth"].get("series", [])}
        for f in r["truth"].get("findings", []):
            if f.get("label") != 1:
                continue
            for skey, items in f.get("key_slices", {}).items():
                n = n_slices.get(skey, 0)
                for ks in items:
                    if n > 1 and "index" in ks:
                        out[f["condition"]].append((i, skey, ks["index"] / (n - 1)))
    return out


def _slice_prior(
    i: int, truth: dict, cands: list[dict], positions: list[tuple[int, str, float]],
    boxes: dict[tuple[str, str], list[tuple[int, np.ndarray]]], key: str,
) -> float:  # fmt: skip
    """IoU of the mean-box prior on the slice it would choose without seeing study ``i``: the
    condition's most frequent series kind and the median relative position of its key slices
    there, over the other studies; 0 when that slice is none of the findings' key slices (the
    rule the agent's boxes are scored by)."""
    others = [(kind, rel) for j, kind, rel in positions if j != i]
    if not others:
        return 0.0
    kinds = [k for k, _ in others]
    kind = max(set(kinds), key=kinds.count)
    rel = float(np.median([x for k, x in others if k == kind]))
    n = next((int(s.get("n_slices") or 0) for s in truth.get("series", []) if s["key"] == kind), 0)
    mean_boxes = [bx for j, bx in boxes[(key, kind)] if j != i]
    if n < 2 or not mean_boxes:
        return 0.0
    index = round(rel * (n - 1))
    hits = [t["slices"][sop] for t in cands for sop, k in t["kinds"].items() if k == kind and t["index"][sop] == index]
    if not hits:
        return 0.0
    mean_box = np.mean(mean_boxes, 0)
    return float(box_iou(np.asarray([mean_box] * len(hits)), np.asarray(hits)).max())


def _side_hit(side: str | None, truth_sides: list[str]) -> bool:
    """Whether a called side names one of the findings it is judged against; "bilateral" also
    where that level has both a left and a right finding (the generator writes one per side)."""
    if side in truth_sides:
        return True
    return side == "bilateral" and {"left", "right"} <= set(truth_sides)


def evaluate_pipeline(
    pipeline: str | Path,
    manifest: str | Path,
    *,
    bootstrap_n: int = 1000,
    batch: int = 8,
    limit: int | None = None,
    retrieval: bool = True,
    level_both_planes: list[str] | None = None,
) -> dict[str, Any]:
    """Run the pipeline folder on every study of ``manifest`` and score it against the generator's
    truth. Returns the metrics dict (``format_table`` prints it). ``level_both_planes`` replaces
    the localization config's (``[]``: every level read on the sagittal box, as before that rule)."""
    from tqdm import tqdm

    from ml.agents.localization import load_truth
    from ml.agents.pipeline import Pipeline
    from ml.data.dicom_adapter import study_from_datasets
    from ml.data.manifest import read_manifest

    manifest = Path(manifest)
    base = manifest.parent
    entries = list(read_manifest(manifest))[:limit]
    pipe = Pipeline.load(pipeline, overrides={"report": False})
    if level_both_planes is not None and pipe.localization is not None:
        pipe.localization.cfg = replace(pipe.localization.cfg, level_both_planes=list(level_both_planes))
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    cross: dict[str, list[Any]] = {"point": [], "point_condition": [], "agent": [], "chance": []}
    feats_for_retrieval: list = []
    bar = tqdm(range(0, len(entries), batch), desc="held-out studies", unit="batch")
    for i in bar:
        chunk = entries[i : i + batch]
        studies = []
        for e in chunk:
            uid, series = read_study(base, e)
            study, _skipped = study_from_datasets(uid, series, pipe.preprocess, patient_key=e.patient_key)
            studies.append(study)
        for e, study, res in zip(chunk, studies, pipe.analyze_many(studies), strict=True):
            truth = load_truth(base / e.ground_truth) if e.ground_truth else {}
            rows.append({"entry": e, "analysis": res, "truth": truth or {}})
            for k, v in sagittal_to_axial(study, truth or {}, res.conditions).items():
                cross[k] += v
        if retrieval:
            feats_for_retrieval += [(e, s) for e, s in zip(chunk, studies, strict=True)]
        bar.set_postfix(studies_per_s=f"{len(rows) / (time.perf_counter() - t0):.2f}")
    seconds = time.perf_counter() - t0
    metrics = score(rows, bootstrap_n=bootstrap_n)
    metrics.update(
        {
            "pipeline": str(pipeline),
            "pipeline_version": pipe.version,
            "manifest": str(manifest),
            "studies": len(rows),
            "seconds_per_study": seconds / max(len(rows), 1),
            "sagittal_to_axial": sagittal_to_axial_summary(cross),
        }
    )
    if retrieval and len(rows) >= 10:
        metrics["retrieval"] = _retrieval(pipe, feats_for_retrieval, [r["analysis"].conditions for r in rows])
    return metrics


def score(rows: list[dict[str, Any]], *, bootstrap_n: int = 1000) -> dict[str, Any]:
    """Diagnosis and localization figures from ``rows`` of {"entry", "analysis", "truth"}."""
    n, keys = len(rows), list(CONDITION_KEYS)
    y = np.full((n, len(keys)), -1, int)
    p = np.zeros((n, len(keys)))
    groups = np.asarray([r["entry"].patient_key for r in rows])
    vendors = np.asarray([str(r["truth"].get("vendor", "unknown")) for r in rows])
    loc: dict[str, dict[str, list]] = {
        k: {f: [] for f in ("level", "side", "iou", "prior", "slice_prior", "g_level", "g_side", "g_iou")} for k in keys
    }
    boxes_by_kind: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = defaultdict(list)
    for i, r in enumerate(rows):
        for f in r["truth"].get("findings", []):
            if f.get("label") == 1:
                for skey, items in f.get("key_slices", {}).items():
                    for ks in items[:1]:
                        boxes_by_kind[(f["condition"], skey)].append((i, np.asarray(ks["box_norm"], float)))
    positions = _key_slice_positions(rows)
    for i, r in enumerate(rows):
        for k, key in enumerate(keys):
            y[i, k] = int(r["entry"].labels.get(key, -1))
        by_cond = {c.condition: c for c in r["analysis"].conditions}
        tidx = _truth_index(r["truth"])
        g = r["entry"].patient_key
        for k, key in enumerate(keys):
            c = by_cond.get(key)
            if c is None:
                continue
            p[i, k] = c.probability
            present = tidx.get(key, [])
            if y[i, k] != 1 or not c.present or not present:
                continue
            L = loc[key]
            L["level"].append(float(any(c.level in t["levels"] for t in present)))
            L["g_level"].append(g)
            # the findings the call is judged against: those at its level (a study may have a left
            # and a right finding at one level), else every present finding of the condition
            cands = [t for t in present if c.level in t["levels"]] or present
            match = cands[0]
            sided = [t for t in cands if t["side"] in SIDES]
            if sided:
                L["side"].append(float(_side_hit(c.side, [t["side"] for t in sided])))
                L["g_side"].append(g)
            if c.boxes and match["slices"]:
                b = c.boxes[0]
                true_boxes = [t["slices"][b.sop_uid] for t in cands if b.sop_uid in t["slices"]]
                iou = 0.0  # a box on a slice that is none of those findings' key slices
                if true_boxes:
                    iou = float(box_iou(np.asarray([b.xyxy_norm] * len(true_boxes)), np.asarray(true_boxes)).max())
                sop, tb = next(iter(match["slices"].items()))
                others = [bx for j, bx in boxes_by_kind[(key, match["kinds"][sop])] if j != i]
                prior = float(box_iou(np.mean(others, 0)[None], np.asarray([tb]))[0]) if others else 0.0
                L["iou"].append(iou)
                L["prior"].append(prior)
                L["slice_prior"].append(_slice_prior(i, r["truth"], cands, positions[key], boxes_by_kind, key))
                L["g_iou"].append(g)
    per_condition = {}
    for k, key in enumerate(keys):
        m = y[:, k] >= 0
        pos = int((y[m, k] == 1).sum())
        ci = bootstrap_ci(y[m, k], p[m, k], auroc, n=bootstrap_n, groups=groups[m]) if 0 < pos < m.sum() else None
        per_condition[key] = {"positives": pos, "n": int(m.sum()), "auroc": list(ci) if ci else None}
    per_vendor = {}
    for v in sorted(set(vendors)):
        sel = vendors == v
        per_vendor[v] = {
            "studies": int(sel.sum()),
            "mean_auroc": _mean_auroc_ci(y[sel], p[sel], groups[sel], bootstrap_n),
        }
    all_level = [h for key in keys for h in loc[key]["level"]]
    all_side = [h for key in keys for h in loc[key]["side"]]
    all_iou = [h for key in keys for h in loc[key]["iou"]]
    all_prior = [h for key in keys for h in loc[key]["prior"]]
    all_slice_prior = [h for key in keys for h in loc[key]["slice_prior"]]
    g_level = [g for key in keys for g in loc[key]["g_level"]]
    g_side = [g for key in keys for g in loc[key]["g_side"]]
    return {
        "diagnosis": {
            "mean_auroc": _mean_auroc_ci(y, p, groups, bootstrap_n),
            "per_condition": per_condition,
            "per_vendor": per_vendor,
        },
        "localization": {
            "level_accuracy": [*_share_ci(all_level, g_level, bootstrap_n), len(all_level)],
            "side_accuracy": [*_share_ci(all_side, g_side, bootstrap_n), len(all_side)],
            "median_box_iou": float(np.median(all_iou)) if all_iou else float("nan"),
            "median_prior_iou": float(np.median(all_prior)) if all_prior else float("nan"),
            # the same prior choosing its own slice, scored like the agent (its fair reference)
            "median_slice_prior_iou": float(np.median(all_slice_prior)) if all_slice_prior else float("nan"),
            "mean_box_iou": float(np.mean(all_iou)) if all_iou else float("nan"),
            "mean_slice_prior_iou": float(np.mean(all_slice_prior)) if all_slice_prior else float("nan"),
            "boxes": len(all_iou),
            "per_condition": {
                key: {
                    "level": float(np.mean(L["level"])) if L["level"] else None,
                    "side": float(np.mean(L["side"])) if L["side"] else None,
                    "iou": float(np.median(L["iou"])) if L["iou"] else None,
                    "n": len(L["level"]),
                }
                for key, L in loc.items()
            },
        },
    }


def _retrieval(pipe: Pipeline, studies: list, conditions: list[list[Any]]) -> dict[str, float]:
    """Study -> report Recall@k over an index of the held-out studies' own reports, built with
    the pipeline's SpineFM and its retrieval agent's text encoder and config. ``conditions``: the
    pipeline's ``ConditionResult`` lists of the same studies, in the same order, so the queries
    are ranked as ``similar`` ranks them (finding space + aligned cosine)."""
    from ml.agents.features import encode_studies
    from ml.agents.retrieval import build_index

    for e, s in studies:
        s.report = e.report  # set only now: the analysis above never saw the report
    feats = encode_studies([s for _, s in studies], pipe.model)
    agent = pipe.retrieval
    index = build_index(feats, pipe.model, getattr(agent, "cfg", None), getattr(agent, "_text", None))
    ranks = ranks_of_truth(index.report_scores(feats, conditions), list(range(len(feats))))  # scores [N, N]
    return {**recall_at(ranks), "index_size": len(feats)}


def _fmt(ci: list[float] | None) -> str:
    if not ci or ci[0] != ci[0]:
        return "n/a"
    return f"{ci[0]:.3f} [{ci[1]:.3f}, {ci[2]:.3f}]"


def format_table(m: dict[str, Any]) -> str:
    """The figures as Markdown tables (what ``evaluate --pipeline`` prints)."""
    d, loc = m["diagnosis"], m["localization"]
    lines = [
        f"pipeline {m['pipeline_version']} on {m['studies']} held-out studies ({m['manifest']}), "
        f"{m['seconds_per_study']:.2f} s/study",
        "",
        "| condition | positives | AUROC [95 % CI] | level | side | median box IoU |",
        "|---|---|---|---|---|---|",
    ]
    for key, row in d["per_condition"].items():
        lc = loc["per_condition"][key]
        f2 = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(
            f"| {key} | {row['positives']}/{row['n']} | {_fmt(row['auroc'])} | {f2(lc['level'])} | "
            f"{f2(lc['side'])} | {f2(lc['iou'])} |"
        )
    lines.append(f"| **mean** | | **{_fmt(d['mean_auroc'])}** | | | |")
    lines += ["", "| vendor | studies | mean AUROC [95 % CI] |", "|---|---|---|"]
    lines += [f"| {v} | {r['studies']} | {_fmt(r['mean_auroc'])} |" for v, r in d["per_vendor"].items()]
    la, sa = loc["level_accuracy"], loc["side_accuracy"]
    lines += [
        "",
        f"level accuracy {_fmt(la[:3])} over {la[3]} true positives called present; "
        f"side accuracy {_fmt(sa[:3])} over {sa[3]}; median box IoU {loc['median_box_iou']:.3f} "
        f"(mean-box prior on the true slice {loc['median_prior_iou']:.3f}; choosing its slice "
        f"{loc['median_slice_prior_iou']:.3f}, mean IoU {loc['mean_box_iou']:.3f} against "
        f"{loc['mean_slice_prior_iou']:.3f}) over {loc['boxes']} boxes",
    ]
    if "sagittal_to_axial" in m:
        x = m["sagittal_to_axial"]
        lines.append(
            f"sagittal -> axial slice retrieval (geometry): the first axial slice at the finding's level "
            f"for {x['top1_same_level']:.3f} of {x['queries']} true boxes' centres on their sagittal T2 key "
            f"slice, {x['agent_top1_same_level']:.3f} of {x['agent_queries']} of the agents' own sagittal "
            f"boxes (chance {x['chance_top1']:.3f}); the true boxes' misses: "
            + (", ".join(f"{c} {m}/{n}" for c, (m, n) in x["point_misses"].items()) or "none")
        )
    if "retrieval" in m:
        r = m["retrieval"]
        lines.append(
            f"retrieval study->report over {r['index_size']} held-out studies: R@1 {r['R@1']:.3f}, "
            f"R@5 {r['R@5']:.3f}, R@10 {r['R@10']:.3f}"
        )
    return "\n".join(lines)
