"""Sagittal -> axial slice retrieval from the DICOM geometry (``axial_slices_through``), on
generated studies read as the drafting worker reads them: a finding's point on its sagittal key
slice finds the axial slices at its level, another point finds another level, and the held-out
scorer counts the agents' own sagittal boxes the same way."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom

from ml.agents.analysis import BoxResult, ConditionResult
from ml.agents.slice_retrieval import axial_slices_through, cross_orientation_queries, sagittal_to_axial
from ml.data.dicom_adapter import study_from_datasets
from ml.data.preprocess import PreprocessConfig


def _study(folder: Path):
    truth = json.loads((folder / "ground_truth.json").read_text())
    series: dict[str, list[pydicom.Dataset]] = {}
    for f in sorted(folder.glob("*/*.dcm")):
        ds = pydicom.dcmread(f)
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    study, _ = study_from_datasets(truth["study_uid"], series, PreprocessConfig(size=64))
    return study, truth


def _queries(agents_synth_dir):
    out = []
    for folder in sorted((agents_synth_dir / "studies").iterdir()):
        study, truth = _study(folder)
        out += [(study, truth, q) for q in cross_orientation_queries(study, truth)]
    assert out, "the generated studies have disc-level findings with sagittal T2 key slices"
    return out


def test_a_findings_point_finds_the_axial_slices_at_its_level(agents_synth_dir):
    for study, _, q in _queries(agents_synth_dir):
        ranked = axial_slices_through(study.series, q.point_mm)
        distances = [d for _, _, d in ranked]
        assert distances == sorted(distances)
        assert {study.series[si].plane for si, _, _ in ranked} == {"axial"}
        first = next(k for si, k, _ in ranked if si == q.axial)
        assert q.same[first], f"{q.condition}: the nearest axial slice is not at the finding's level"


def test_a_point_at_another_disc_finds_another_level(agents_synth_dir):
    study, _, q = _queries(agents_synth_dir)[0]
    axial = study.series[q.axial]
    # move the point along the axial slices' normal to the farthest axial slice of another level
    iop = np.asarray(axial.geometry.orientations[0], float)
    normal = np.cross(iop[:3], iop[3:])
    other = max((k for k, same in enumerate(q.same) if not same),
                key=lambda k: axial.geometry.plane_distance(k, q.point_mm))  # fmt: skip
    offset = (np.asarray(axial.geometry.positions[other], float) - q.point_mm) @ normal
    moved = q.point_mm + offset * normal
    first = next(k for si, k, _ in axial_slices_through(study.series, moved) if si == q.axial)
    assert not q.same[first]
    assert axial.geometry.plane_distance(first, moved) < 1e-6 + axial.geometry.plane_distance(other, moved)


def test_series_without_geometry_give_no_candidates(agents_synth_dir):
    study, _, q = _queries(agents_synth_dir)[0]
    bare = [replace(s, geometry=None) for s in study.series]
    assert axial_slices_through(bare, q.point_mm) == []


def test_the_held_out_scorer_counts_the_agents_sagittal_box(agents_synth_dir):
    queries = _queries(agents_synth_dir)
    # a condition with one disc-level finding in its study: a box two levels away misses it
    study, truth, q = next(
        (st, t, q) for st, t, q in queries
        if sum(q2.condition == q.condition for st2, _, q2 in queries if st2 is st) == 1
    )  # fmt: skip
    finding = next(
        f for f in truth["findings"]
        if f["condition"] == q.condition and f.get("label") == 1 and "-" in (f.get("level") or "")
    )  # fmt: skip
    ks = finding["key_slices"]["sag_t2"][0]
    sag = study.series[q.sagittal]
    on_finding = BoxResult(sag.series_uid, ks["sop_instance_uid"], q.slice, ks["box"], ks["box_norm"], 0.9)
    # the same box moved a third of the image towards its middle: two levels or so away
    x0, y0, x1, y1 = ks["box"]
    shift = sag.geometry.rows / 3 * (1 if y0 < sag.geometry.rows / 2 else -1)
    elsewhere = replace(on_finding, xyxy=[x0, y0 + shift, x1, y1 + shift])
    hit = sagittal_to_axial(study, truth, [ConditionResult(q.condition, 0.9, True, 0.5, boxes=[on_finding])])
    miss = sagittal_to_axial(study, truth, [ConditionResult(q.condition, 0.9, True, 0.5, boxes=[elsewhere])])
    absent = sagittal_to_axial(study, truth, [ConditionResult(q.condition, 0.1, False, 0.5, boxes=[on_finding])])
    assert hit["agent"] == [1.0]
    assert miss["agent"] == [0.0]
    assert absent["agent"] == []  # only calls of present findings are counted
    assert len(hit["point"]) == len(hit["chance"]) == len(hit["point_condition"]) >= 1
    assert q.condition in hit["point_condition"]
    assert all(0 < c < 1 for c in hit["chance"])


def test_the_research_protocol_scores_sagittal_to_axial_by_geometry(agents_synth_dir, tiny_pipeline_dir):
    from ml.agents.evaluate import evaluate_retrieval
    from ml.agents.retrieval import RetrievalConfig
    from ml.agents.train import prepare

    prep = prepare(agents_synth_dir / "manifest.jsonl", tiny_pipeline_dir / "spinefm")
    m = evaluate_retrieval(prep, RetrievalConfig())["cross_orientation"]
    assert m["queries"] == len(_queries(agents_synth_dir))
    assert m["top1_same_level"] == 1.0  # geometry: every finding's point finds its level first
    assert 0.0 <= m["top1_same_level_features"] <= 1.0  # the zero-shot reference, whatever it scores
    assert 0 < m["chance_top1"] < 1
    assert m["median_rank_first_same_level"] == 1.0


def test_the_held_out_command_prints_sagittal_to_axial(agents_synth_dir, tiny_pipeline_dir):
    """``python -m ml agents evaluate --pipeline``'s scorer on the served tiny pipeline."""
    from ml.agents.heldout import evaluate_pipeline, format_table

    m = evaluate_pipeline(tiny_pipeline_dir, agents_synth_dir / "manifest.jsonl", bootstrap_n=20, retrieval=False)
    x = m["sagittal_to_axial"]
    assert x["queries"] == len(_queries(agents_synth_dir))
    assert x["top1_same_level"] == 1.0
    assert x["point_misses"] == {}  # listed per condition only where a true box missed
    assert x["agent_queries"] <= x["queries"]
    assert "sagittal -> axial slice retrieval (geometry)" in format_table(m)


def test_the_summary_lists_the_true_boxes_misses_per_condition():
    from ml.agents.slice_retrieval import sagittal_to_axial_summary

    x = sagittal_to_axial_summary({"point": [1.0, 0.0, 0.0, 1.0], "agent": [1.0],
                                   "point_condition": ["a", "b", "b", "c"], "chance": [0.2] * 4})  # fmt: skip
    assert x["queries"] == 4
    assert x["top1_same_level"] == 0.5
    assert x["point_misses"] == {"b": [2, 2]}
