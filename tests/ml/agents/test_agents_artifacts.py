"""Each agent family's artifact survives save -> load with identical outputs and version."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.agents.analysis import ConditionResult
from ml.agents.diagnosis import DiagnosisAgents, DiagnosisConfig, fit_probes
from ml.agents.features import encode_studies
from ml.agents.localization import LocalizationAgents, LocalizationConfig, load_truth
from ml.agents.localization_train import train_localization
from ml.agents.retrieval import RetrievalIndex, build_index
from ml.conditions import CONDITION_KEYS
from ml.data.loader import StudyLoader, load_manifest
from ml.data.preprocess import PreprocessConfig
from ml.data.splits import kfold
from ml.spinefm.model import SpineFM, SpineFMConfig

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def small(agents_synth_dir):
    """(features, truths, model): the 2 generated studies through a random-init tiny SpineFM."""
    torch.manual_seed(0)
    model = SpineFM(SpineFMConfig(encoder="tiny", embed_dim=64, pool_hidden=32, router="none")).eval()
    entries, base = load_manifest(agents_synth_dir / "manifest.jsonl")
    loader = StudyLoader(base, PreprocessConfig(size=model.img_size))
    studies = [loader.load(e, geometry=True) for e in entries]
    feats = encode_studies(studies, model)
    truths = [load_truth(base / e.ground_truth) for e in entries]
    return feats, truths, model


def test_diagnosis_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = (x[:, :1] + 0.3 * rng.normal(size=(60, 17)) > 0).astype(np.int64)
    y[::7, 3] = -1  # uncertain labels are excluded, not treated as negatives
    agents = fit_probes(x, y, [f"P{i}" for i in range(60)], DiagnosisConfig())
    version = agents.save(tmp_path / "diag")
    back = DiagnosisAgents.load(tmp_path / "diag")
    z = (x - agents.mean) / agents.std
    np.testing.assert_allclose(back.infer(z), agents.infer(z), rtol=1e-5, atol=1e-6)
    assert back.version == version
    assert version.startswith("diagnosis-")
    assert back.trained.all()
    assert agents.meta["counts"]["disc_herniation"]["uncertain"] == 9
    assert (back.temperature > 0).all()
    assert ((back.threshold >= 0) & (back.threshold <= 1)).all()
    p = back.infer(z)
    assert abs(float(np.corrcoef(p[:, 0], x[:, 0])[0, 1])) > 0.5  # it learnt the signal


def test_localization_round_trip_and_output_geometry(small, tmp_path):
    feats, truths, _ = small
    agents = train_localization(feats, truths, LocalizationConfig(min_slices=1))
    assert agents.trained.any()
    version = agents.save(tmp_path / "loc")
    back = LocalizationAgents.load(tmp_path / "loc")
    assert back.version == version
    assert back.levels == agents.levels
    results = [ConditionResult(k, 0.9, True, 0.5) for k in CONDITION_KEYS]
    out = back.localize(feats[0], results)
    same = LocalizationAgents(agents.cfg, agents.arrays(), dict(agents.meta))  # float32, like the file
    ref = same.localize(feats[0], [ConditionResult(k, 0.9, True, 0.5) for k in CONDITION_KEYS])
    assert [asdict(r) for r in out] == [asdict(r) for r in ref]
    series = {s.series_uid: s for s in feats[0].study.series}
    boxed = [r for r in out if r.boxes]
    assert boxed
    for r in boxed:
        for b in r.boxes:
            s = series[b.series_uid]
            assert b.sop_uid == s.sop_uids[b.index]
            assert 0 <= b.xyxy[0] <= b.xyxy[2] <= s.geometry.columns
            assert 0 <= b.xyxy[1] <= b.xyxy[3] <= s.geometry.rows
            assert len(b.patient_mm) == 4


def test_retrieval_round_trip(small, tmp_path):
    feats, _, model = small
    index = build_index(feats, model)
    version = index.save(tmp_path / "ret")
    back = RetrievalIndex.load(tmp_path / "ret")
    assert back.version == version
    np.testing.assert_allclose(back.report_scores(feats), index.report_scores(feats), rtol=1e-6)
    assert back.reports == [f.study.report for f in feats]
    # the query's own study and patient are never returned as a similar case
    hits = back.similar(feats[:1])[0]
    assert all(h.study_uid != feats[0].study.study_uid for h in hits)


def test_report_to_study_search_ranks_the_matching_study_first(small, tmp_path):
    """report -> study over a 24-study index whose case embeddings are what a perfectly aligned
    SpineFM would give (each study's own projected report): every report must find its study
    first, through the saved index's own text-encoder settings, with scores in descending order."""
    from ml.agents.retrieval import RetrievalConfig, encode_reports
    from ml.data.synthetic.report_corpus import iter_report_samples
    from ml.spinefm.text import TextEncoder

    _, _, model = small
    reports = [s.report for s in iter_report_samples(24, seed=5)]
    assert len(set(reports)) == 24
    cfg = RetrievalConfig()
    emb = encode_reports(reports, model, TextEncoder(cfg.text_encoder, cfg.text_pooling, cfg.text_max_length))
    uids = [f"1.2.{i}" for i in range(24)]
    meta = {"study_uids": uids, "patient_keys": [f"P{i}" for i in range(24)], "reports": reports}
    RetrievalIndex(cfg, {"report_emb": emb, "study_emb": emb.copy()}, meta).save(tmp_path / "ret")
    back = RetrievalIndex.load(tmp_path / "ret")  # a fresh text encoder, from the saved config
    queries = [3, 11, 17, 23]
    found = back.search_studies([reports[i] for i in queries], model, k=5)
    for i, hits in zip(queries, found, strict=True):
        assert len(hits) == 5
        assert hits[0][0] == uids[i]
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        scores = [sc for _, sc in hits]
        assert scores == sorted(scores, reverse=True)
        assert len({u for u, _ in hits}) == 5


def test_cv_folds_never_split_a_patient():
    from ml.agents.crossval import kfold_keys
    from ml.data.manifest import StudyEntry

    entries = [StudyEntry(study_uid=str(i), patient_key=f"P{i // 3}", series=[]) for i in range(60)]
    folds = kfold(entries, 5, seed=0)
    for train, test in folds:
        assert not {entries[i].patient_key for i in train} & {entries[i].patient_key for i in test}
    assert sorted(i for _, te in folds for i in te) == list(range(60))
    assert [t for _, t in kfold_keys([e.patient_key for e in entries], 5, 0)] == [t for _, t in folds]


def test_cli_lists_the_agents_command():
    out = subprocess.run([sys.executable, "-m", "ml", "agents", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("train", "evaluate", "bootstrap"):
        assert cmd in out.stdout
    cfg = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml",
            "agents",
            "train",
            "--manifest",
            "x",
            "--spinefm",
            "y",
            "--out",
            "z",
            "diagnosis.nope=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert cfg.returncode != 0
    assert "unknown config keys" in cfg.stderr
