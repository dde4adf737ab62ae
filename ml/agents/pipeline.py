"""The pipeline the review app calls: SpineFM once, then every agent, in dependency order.

``Pipeline.load(folder)`` reads ``pipeline.json`` and loads SpineFM and every enabled agent's
artifact once (a Celery worker keeps the object for its lifetime). ``analyze_many(studies)``
encodes the slices of all series of all studies of a sequence class together (large batches),
shares the embeddings with every agent, and returns one JSON-serialisable ``StudyAnalysis``
per study::

    embedding (SpineFM) -> diagnosis (17) -> localization (17) -> retrieval -> report -> grounding

The grounding step (``ml.agents.report.grounding``) gives every draft its CLINICAL HISTORY,
TECHNIQUE and COMPARISON from the study's DICOM and archive (``facts``) and checks its findings
against the agents' calls, recording each change in ``StudyAnalysis.report_check``.

Every agent family is loaded and run the same way (``ml.agents.protocol``): its folder through
the registry ``FAMILIES``, its part of the analysis through ``run``, each inside its own guard:
an exception becomes ``AgentRun(ok=False, error=...)`` and the rest continues. When the Medical
Report Agent is disabled, missing or fails, the draft is the structured template of
``ml.agents.template`` (``report_source`` says which), so a study always gets a draft. Timings
are per study; a step that ran for a batch of studies reports its time divided by the batch size.

Pipeline folder layout (written by ``ml.agents.train.build_pipeline``)::

    pipeline.json        # {"version", "code_version", "config", "components": {name: {"path", "version"}}}
    spinefm/             # SpineFM checkpoint (model.safetensors + config.json)
    diagnosis/ localization/ retrieval/   # agent artifacts (weights.safetensors + config.json)
    report/              # the Medical Report Agent (optional)
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.agents.analysis import AgentRun, SeriesSummary, StudyAnalysis
from ml.agents.features import StudyFeatures, encode_studies
from ml.agents.protocol import FAMILIES, RunContext
from ml.agents.template import template_report
from ml.data.preprocess import PreprocessConfig
from ml.data.types import StudyData
from ml.train.config import from_dict

if TYPE_CHECKING:
    from ml.agents.report.facts import StudyFacts

log = logging.getLogger(__name__)

# The family whose failure is not a gap in the analysis: a study always gets a draft, the
# template's when the report family is disabled, missing or fails (``Pipeline._draft``).
DRAFT = "report"


@dataclass
class PipelineConfig:
    diagnosis: bool = True  # run the 17 Diagnosis Agents
    localization: bool = True  # run the 17 Localization Agents
    retrieval: bool = True  # similar prior cases (study -> report)
    report: bool = True  # Medical Report Agent (else the structured template draft)
    localize: str = "present"  # "present": boxes for conditions called present; "all": all 17
    max_new_tokens: int = 300  # report token budget
    slice_batch: int = 256  # slices per encoder forward
    studies_per_batch: int = 8  # studies sharing one SpineFM forward in analyze_many
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    threads: int = 0  # torch CPU threads; 0 = leave torch's default


def _error(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


class _Family:
    """``pipeline.diagnosis`` and its siblings: the loaded family of that name in
    ``pipeline.agents`` (None when not loaded), which callers read and may replace."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Pipeline | None, owner: type | None = None) -> Any:
        return self if obj is None else obj.agents.get(self.name)

    def __set__(self, obj: Pipeline, value: Any) -> None:
        obj.agents[self.name] = value


class Pipeline:
    diagnosis = _Family()
    localization = _Family()
    retrieval = _Family()
    report = _Family()

    def __init__(
        self,
        model,
        components: dict[str, Any],
        versions: dict[str, str],
        cfg: PipelineConfig,
        version: str,
        load_errors: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.agents: dict[str, Any] = dict(components)  # family name -> loaded family (``protocol.AgentFamily``)
        self.versions = versions
        self.cfg = cfg
        self.version = version
        self.load_errors = load_errors or {}

    @property
    def preprocess(self) -> PreprocessConfig:
        """What ``study_from_datasets`` / ``StudyLoader`` must use for this pipeline's model.

        A dense diagnosis head looks at near-native resolution: the slices are preprocessed at
        the larger of SpineFM's and the head's size (SpineFM resizes to its own), as in training
        (``ml.agents.train.prepare``); at SpineFM's 96 px the head would see blurred lesions."""
        size = self.model.img_size
        cfg = getattr(self.diagnosis, "cfg", None)
        if cfg is not None and getattr(cfg, "head", "") == "dense":
            size = max(size, int(cfg.dense_size))
        return PreprocessConfig(size=size)

    # -- loading -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, overrides: dict[str, Any] | None = None) -> Pipeline:
        """Load SpineFM and every enabled agent once. A missing or broken *agent* artifact is
        recorded (its runs fail with that error); a missing SpineFM is an error here."""
        import torch

        from ml.spinefm.io import load_spinefm

        folder = Path(folder)
        doc = json.loads((folder / "pipeline.json").read_text())
        cfg = from_dict(PipelineConfig, {**doc.get("config", {}), **(overrides or {})})
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        comps = doc["components"]
        model = load_spinefm(folder / comps["spinefm"]["path"], map_location=device)
        versions = {"spinefm": comps["spinefm"]["version"]}
        loaded: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, fn in FAMILIES.items():
            if not getattr(cfg, name, True):
                continue
            entry = comps.get(name)
            if not entry or not entry.get("path"):
                errors[name] = f"no {name} artifact in {folder}" + (
                    f" ({entry['skipped']})" if entry and entry.get("skipped") else ""
                )
                continue
            try:
                loaded[name] = fn(folder / entry["path"])
                versions[name] = entry.get("version") or getattr(loaded[name], "version", "") or name
            except Exception as exc:  # a broken agent must not stop the others from loading
                errors[name] = f"loading {name} failed: {_error(exc)}"
                log.warning(errors[name])
        return cls(model, loaded, versions, cfg, doc["version"], errors)

    # -- analysis ----------------------------------------------------------------------------------
    def analyze(
        self, study: StudyData, skipped: list[dict[str, str]] | None = None, facts: StudyFacts | None = None
    ) -> StudyAnalysis:
        return self.analyze_many([study], [skipped or []], [facts])[0]

    def analyze_many(
        self,
        studies: list[StudyData],
        skipped: list[list[dict[str, str]]] | None = None,
        facts: list[StudyFacts | None] | None = None,
    ) -> list[StudyAnalysis]:
        """``facts``: per study, what its DICOM and the archive say (request, series, priors);
        the draft's CLINICAL HISTORY / TECHNIQUE / COMPARISON come from there and nowhere else
        (None: placeholders, and the technique from the series the pipeline saw)."""
        skipped = skipped or [[] for _ in studies]
        facts = facts or [None for _ in studies]
        out: list[StudyAnalysis] = []
        step = max(1, self.cfg.studies_per_batch)
        for i in range(0, len(studies), step):
            out += self._analyze_batch(studies[i : i + step], skipped[i : i + step], facts[i : i + step])
        return out

    def _analyze_batch(
        self, studies: list[StudyData], skipped: list[list[dict[str, str]]], facts: list[StudyFacts | None]
    ) -> list[StudyAnalysis]:
        n = len(studies)
        results = [
            StudyAnalysis(
                study_uid=s.study_uid,
                pipeline_version=self.version,
                skipped=list(sk),
                model_versions=dict(self.versions),
            )
            for s, sk in zip(studies, skipped, strict=True)
        ]
        feats: list[StudyFeatures] | None = None
        t0 = time.perf_counter()
        try:
            feats = encode_studies(studies, self.model, self.cfg.slice_batch, studies_per_batch=n)
            run = AgentRun("embedding", self.versions["spinefm"], (time.perf_counter() - t0) / n)
        except Exception as exc:
            log.exception("SpineFM embedding failed")
            run = AgentRun("embedding", self.versions["spinefm"], (time.perf_counter() - t0) / n, False, _error(exc))
        for r in results:
            r.agents.append(run)
        if feats is not None:
            for r, f in zip(results, feats, strict=True):
                r.series = [
                    SeriesSummary(
                        series_uid=s.series_uid,
                        sequence_class=s.sequence_class,
                        plane=s.plane,
                        route=e.route,
                        n_slices=int(e.slices.shape[0]),
                        description=s.description,
                    )
                    for s, e in zip(f.study.series, f.embedding.series, strict=True)
                ]

        # every family in the registry's order, each reading what the ones before it wrote
        context = RunContext(self.cfg, self.agents)
        for name in FAMILIES:
            if name != DRAFT:
                self._guarded(results, feats, name, context)
        drafted = self._draft_batch(results, feats, context)
        for i, r in enumerate(results):
            if i not in drafted:
                self._draft(r, studies[i], None if feats is None else feats[i], context)
            self._ground_report(r, studies[i], facts[i])
        return results

    def _draft_batch(
        self, results: list[StudyAnalysis], feats: list[StudyFeatures] | None, context: RunContext
    ) -> set[int]:
        """Several studies' drafts in one call of a report family that drafts batches
        (``per_study`` False); the indices of the studies it drafted. A study it did not draft
        (its draft was empty, or the call failed) goes through ``_draft`` on its own, so it is
        tried once more alone and gets the template draft with the error if that fails too."""
        agent = self.agents.get(DRAFT)
        if len(results) < 2 or not self.cfg.report or agent is None or feats is None:
            return set()
        if getattr(agent, "per_study", True):
            return set()
        version = self.versions.get(DRAFT, "")
        t0 = time.perf_counter()
        try:
            agent.run(results, feats, context)
        except Exception:
            log.exception("report agent failed on a batch of %d studies; drafting them one by one", len(results))
        drafted = {i for i, r in enumerate(results) if r.report_source == "report_agent"}
        seconds = (time.perf_counter() - t0) / len(results)  # the batch's time, shared
        for i in drafted:
            results[i].agents.append(AgentRun(DRAFT, version, seconds))
        return drafted

    def _guarded(
        self, results: list[StudyAnalysis], feats: list[StudyFeatures] | None, name: str, context: RunContext
    ) -> None:
        """Run family ``name`` on the batch (a ``per_study`` family on one study at a time); its
        failure, or its absence, becomes an ``AgentRun(ok=False)`` of each study it concerns."""
        if not getattr(self.cfg, name, True):
            return
        version = self.versions.get(name, "")
        agent = self.agents.get(name)
        if agent is None or feats is None:
            err = self.load_errors.get(name) or ("no SpineFM embedding" if feats is None else f"{name} not loaded")
            for r in results:
                r.agents.append(AgentRun(name, version, 0.0, False, err))
            return
        per_study = bool(getattr(agent, "per_study", False))
        groups = [([r], [f]) for r, f in zip(results, feats, strict=True)] if per_study else [(results, feats)]
        for rs, fs in groups:
            t0 = time.perf_counter()
            try:
                agent.run(rs, fs, context)
                ok, err = True, ""
            except Exception as exc:
                log.exception("%s agent failed", name)
                ok, err = False, _error(exc)
            dt = (time.perf_counter() - t0) / len(rs)
            for r in rs:
                r.agents.append(AgentRun(name, version, dt, ok, err))

    def _ground_report(self, r: StudyAnalysis, study: StudyData, facts: StudyFacts | None) -> None:
        """Every draft, whoever wrote it, through the facts and the consistency check
        (``ml.agents.report.grounding``). A failure here keeps the structured template draft,
        which is grounded by construction, and is recorded as the report run's error."""
        from ml.agents.report.facts import SeriesFacts
        from ml.agents.report.grounding import ground_draft

        series = [SeriesFacts(s.series_uid, s.sequence_class, s.plane or "", "", s.description) for s in study.series]
        template = r.report_source == "template"
        header = r.report_text.splitlines()[0] if template and r.report_text else ""
        try:
            g = ground_draft(r.report_text, r.conditions, study.region, facts, series, header, not template)
        except Exception as exc:
            log.exception("grounding the draft failed")
            run = next((a for a in reversed(r.agents) if a.name == DRAFT), None)
            if run is not None:
                run.ok, run.error = False, f"grounding failed: {_error(exc)}"
            return
        r.report_text, r.report_sections = g.text, g.sections
        r.report_check, r.report_facts = g.check, g.facts

    def _draft(self, r: StudyAnalysis, study: StudyData, feat: StudyFeatures | None, context: RunContext) -> None:
        """The report family's ``run``, else the template draft; always leaves a draft in ``r``.

        Not ``_guarded``: a study must get a draft whatever happens to the report family, so a
        disabled family still records a (template) run, and a missing or failing one the template
        draft beside its error."""
        version = self.versions.get(DRAFT, "")
        t0 = time.perf_counter()
        err = ""
        agent = self.agents.get(DRAFT)
        if not self.cfg.report:
            note = "report agent disabled by config"
        elif agent is None or feat is None:
            err = self.load_errors.get(DRAFT) or ("no SpineFM embedding" if feat is None else "report agent not loaded")
            note = err
        else:
            try:
                agent.run([r], [feat], context)
                r.agents.append(AgentRun(DRAFT, version, time.perf_counter() - t0))
                return
            except Exception as exc:
                log.exception("report agent failed")
                err = _error(exc)
                note = err
        technique = ", ".join(s.description for s in study.series if s.description)
        r.report_text, r.report_sections = template_report(r.conditions, study.region, technique=technique)
        r.report_source = "template"
        r.agents.append(
            AgentRun(DRAFT, "template" if not err else version or "template", time.perf_counter() - t0, not err, err)
        )
        if not err:
            log.info("study %s: template draft (%s)", r.study_uid, note)


def analyze_study(
    study: StudyData, pipeline: Pipeline | str | Path, skipped: list[dict[str, str]] | None = None
) -> StudyAnalysis:
    """One study through a loaded pipeline (or a pipeline folder, loaded for this call only)."""
    if not isinstance(pipeline, Pipeline):
        pipeline = Pipeline.load(pipeline)
    return pipeline.analyze(study, skipped)


def write_pipeline_json(
    folder: str | Path, version: str, code_version: str, cfg: PipelineConfig, components: dict
) -> Path:
    """``pipeline.json`` of a pipeline folder (components: name -> {"path", "version"} or {"skipped"})."""
    path = Path(folder) / "pipeline.json"
    doc = {"version": version, "code_version": code_version, "config": asdict(cfg), "components": components}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True))
    return path


def spinefm_version(folder: str | Path) -> str:
    import hashlib

    return "spinefm-" + hashlib.sha1((Path(folder) / "model.safetensors").read_bytes()).hexdigest()[:10]


__all__ = ["Pipeline", "PipelineConfig", "analyze_study"]
