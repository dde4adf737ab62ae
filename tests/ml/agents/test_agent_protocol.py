"""Every agent family speaks one protocol (``ml.agents.protocol``): it is registered by name, its
artifact round-trips through the registry, and the pipeline runs it through ``run`` inside the
same guard, so a family that raises degrades the analysis instead of sinking the study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from ml.agents.analysis import StudyAnalysis
from ml.agents.dense import DenseDiagnosisAgents
from ml.agents.diagnosis import DiagnosisAgents, DiagnosisConfig, fit_probes
from ml.agents.features import StudyFeatures
from ml.agents.localization import LocalizationAgents, LocalizationConfig
from ml.agents.mil import MILDiagnosisAgents
from ml.agents.pipeline import Pipeline
from ml.agents.protocol import FAMILIES, AgentFamily, RunContext
from ml.agents.retrieval import RetrievalConfig, RetrievalIndex
from ml.conditions import CONDITION_KEYS
from ml.data.loader import StudyLoader, load_manifest

K = len(CONDITION_KEYS)


def _linear() -> DiagnosisAgents:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (x[:, :1] + 0.3 * rng.normal(size=(40, K)) > 0).astype(np.int64)
    return fit_probes(x, y, [f"P{i}" for i in range(40)], DiagnosisConfig())


def _mil() -> MILDiagnosisAgents:
    rng = np.random.default_rng(1)
    f, h = 5, 3
    arrays = {
        "V_w": rng.normal(size=(h, f)),
        "V_b": np.zeros(h),
        "U_w": rng.normal(size=(h, f)),
        "U_b": np.zeros(h),
        "w": rng.normal(size=(K, h)),
        "beta": rng.normal(size=(K, h)),
        "b": np.zeros(K),
        "mean": np.zeros(f),
        "std": np.ones(f),
        "temperature": np.ones(K),
        "threshold": np.full(K, 0.5),
        "trained": np.ones(K, np.uint8),
        "prior": np.full(K, 0.1),
    }
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    return MILDiagnosisAgents(DiagnosisConfig(head="mil", mil_hidden=h), arrays, {"n_studies": 3})


def _dense() -> DenseDiagnosisAgents:
    rng = np.random.default_rng(2)
    arrays = {
        "w1": rng.normal(size=(322, 4)),
        "b1": np.zeros(4),
        "w2": rng.normal(size=(4, K)),
        "b2": np.zeros(K),
        "mean": np.zeros(322),
        "std": np.ones(322),
        "temperature": np.ones(K),
        "threshold": np.full(K, 0.5),
        "trained": np.ones(K, np.uint8),
        "prior": np.full(K, 0.1),
    }
    return DenseDiagnosisAgents(DiagnosisConfig(head="dense", dense_hidden=4), arrays, {"n_studies": 3})


def _localization() -> LocalizationAgents:
    rng = np.random.default_rng(3)
    f, g = 7, K + 12
    arrays = {
        "slice_weight": rng.normal(size=(K, f)),
        "slice_bias": np.zeros(K),
        "box_weight": rng.normal(size=(K, 4, f)),
        "box_bias": np.tile([0.4, 0.4, 0.6, 0.6], (K, 1)),
        "mean": np.zeros(f),
        "std": np.ones(f),
        "trained": np.ones(K, np.uint8),
        "level_weight": rng.normal(size=(2, g)),
        "level_bias": np.zeros(2),
    }
    arrays = {k: v.astype(np.float32) if v.dtype != np.uint8 else v for k, v in arrays.items()}
    return LocalizationAgents(LocalizationConfig(), arrays, {"levels": ["L4-L5", "L5-S1"], "sided": []})


def _retrieval() -> RetrievalIndex:
    rng = np.random.default_rng(4)
    emb = rng.normal(size=(3, 8)).astype(np.float32)
    meta = {"study_uids": ["1.2.1", "1.2.2", "1.2.3"], "patient_keys": ["P1", "P2", "P3"], "reports": ["a", "b", "c"]}
    return RetrievalIndex(RetrievalConfig(), {"report_emb": emb, "study_emb": emb.copy()}, meta)


TINY = {
    "linear": ("diagnosis", _linear),
    "mil": ("diagnosis", _mil),
    "dense": ("diagnosis", _dense),
    "localization": ("localization", _localization),
    "retrieval": ("retrieval", _retrieval),
}


def test_the_registry_names_every_family_in_the_order_the_pipeline_runs_them():
    assert list(FAMILIES) == ["diagnosis", "localization", "retrieval", "report"]


@pytest.mark.parametrize("kind", list(TINY))
def test_a_tiny_artifact_round_trips_through_the_registry(kind: str, tmp_path: Path):
    family, make = TINY[kind]
    agent = make()
    assert isinstance(agent, AgentFamily)
    assert agent.name == family
    version = agent.save(tmp_path / kind)
    assert version == agent.version
    assert version.startswith(f"{family}-")
    back = FAMILIES[family](tmp_path / kind)
    assert type(back) is type(agent)
    assert isinstance(back, AgentFamily)
    assert back.version == version
    assert back.save(tmp_path / "again") == version  # the same weights: the same version
    saved, again = (
        load_file(str(tmp_path / kind / "weights.safetensors")),
        load_file(str(tmp_path / "again" / "weights.safetensors")),
    )
    assert saved.keys() == again.keys()
    for key in saved:
        np.testing.assert_array_equal(saved[key], again[key])


@pytest.mark.parametrize(("kind", "other"), [("linear", MILDiagnosisAgents), ("dense", DiagnosisAgents)])
def test_a_head_loads_only_its_own_artifacts(kind: str, other: type, tmp_path: Path):
    TINY[kind][1]().save(tmp_path / kind)
    with pytest.raises(ValueError, match="diagnosis head"):
        other.load(tmp_path / kind)


def test_every_family_of_the_bootstrap_pipeline_loads_through_the_registry(tiny_pipeline_dir: Path, tmp_path: Path):
    import json

    comps = json.loads((tiny_pipeline_dir / "pipeline.json").read_text())["components"]
    present = [name for name in FAMILIES if comps.get(name, {}).get("path")]
    assert {"diagnosis", "localization", "retrieval"} <= set(present)
    for name in present:
        agent = FAMILIES[name](tiny_pipeline_dir / comps[name]["path"])
        assert isinstance(agent, AgentFamily), name
        assert agent.name == name
        version = agent.save(tmp_path / name)
        back = FAMILIES[name](tmp_path / name)
        assert type(back) is type(agent)
        assert back.version == version == agent.version
        if name != "report":  # the report agent's version is its config's, not its weights' hash
            assert version == comps[name]["version"]


# -- the pipeline runs every family through the protocol, degrading as before ----------------------


class Exploding:
    """A family that speaks the protocol and whose ``run`` raises."""

    version = "exploding"

    def __init__(self, name: str, message: str, per_study: bool = False) -> None:
        self.name, self.message, self.per_study = name, message, per_study

    def save(self, folder: str | Path) -> str:
        return self.version

    @classmethod
    def load(cls, folder: str | Path) -> Exploding:
        raise NotImplementedError

    def run(self, results: list[StudyAnalysis], feats: list[StudyFeatures], context: RunContext) -> None:
        raise RuntimeError(self.message)


class FailsOn:
    """The real localization family, except on one study."""

    name, version, per_study = "localization", "fails-on", True

    def __init__(self, real: LocalizationAgents, study_uid: str) -> None:
        self.real, self.study_uid = real, study_uid

    def save(self, folder: str | Path) -> str:
        return self.version

    @classmethod
    def load(cls, folder: str | Path) -> FailsOn:
        raise NotImplementedError

    def run(self, results: list[StudyAnalysis], feats: list[StudyFeatures], context: RunContext) -> None:
        if any(r.study_uid == self.study_uid for r in results):
            raise RuntimeError("this study exploded")
        self.real.run(results, feats, context)


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_dir: Path) -> Pipeline:
    return Pipeline.load(tiny_pipeline_dir)


@pytest.fixture(scope="module")
def studies(agents_synth_dir: Path, pipeline: Pipeline) -> list:
    entries, base = load_manifest(agents_synth_dir / "manifest.jsonl")
    loader = StudyLoader(base, pipeline.preprocess)
    return [loader.load(e, geometry=True) for e in entries]


def test_the_stand_ins_speak_the_protocol():
    assert isinstance(Exploding("x", "y"), AgentFamily)
    assert not isinstance(object(), AgentFamily)


def test_a_per_study_family_fails_one_study_at_a_time(pipeline: Pipeline, studies: list):
    assert len(studies) == 2
    real = pipeline.localization
    saved = pipeline.report, pipeline.cfg.report
    pipeline.cfg.report = False
    try:
        pipeline.localization = FailsOn(real, studies[1].study_uid)
        one_by_one = pipeline.analyze_many(studies)
        pipeline.localization = FailsOn(real, studies[1].study_uid)
        pipeline.localization.per_study = False
        batched = pipeline.analyze_many(studies)
    finally:
        pipeline.localization = real
        pipeline.report, pipeline.cfg.report = saved
    assert "localization" not in one_by_one[0].errors
    assert "this study exploded" in one_by_one[1].errors["localization"]
    assert all("this study exploded" in r.errors["localization"] for r in batched)


def test_a_missing_family_is_reported_as_not_loaded(pipeline: Pipeline, studies: list):
    saved = pipeline.retrieval, pipeline.cfg.report
    pipeline.retrieval, pipeline.cfg.report = None, False
    try:
        result = pipeline.analyze(studies[0])
    finally:
        pipeline.retrieval, pipeline.cfg.report = saved
    run = next(a for a in result.agents if a.name == "retrieval")
    assert (run.ok, run.seconds, run.error) == (False, 0.0, "retrieval not loaded")
    assert not result.similar_cases
    assert "localization" not in result.errors
