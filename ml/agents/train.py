"""Training every agent family on SpineFM features and writing one pipeline folder.

``prepare(manifest, spinefm)`` loads the manifest's studies (with slice SOP UIDs and geometry),
encodes them once with SpineFM and reads each study's ground truth; ``build_pipeline`` trains the
diagnosis, localization and retrieval agents on the training studies, the Medical Report Agent
when it is importable, and writes the folder ``Pipeline.load`` reads.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ml.agents.analysis import ConditionResult
from ml.agents.cell_localization import localize_with
from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.features import StudyFeatures, encode_studies
from ml.agents.heads import train_diagnosis
from ml.agents.localization import LocalizationConfig, load_truth
from ml.agents.localization_train import train_localization
from ml.agents.pipeline import PipelineConfig, spinefm_version, write_pipeline_json
from ml.agents.retrieval import RetrievalConfig, build_index
from ml.data.cache import SliceCache, default_cache_dir
from ml.data.loader import StudyLoader, load_manifest
from ml.data.manifest import StudyEntry
from ml.data.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

# bump when agent code changes in a way that invalidates cached pipelines
CODE_VERSION = "agents-1"


@dataclass
class Prepared:
    entries: list[StudyEntry]
    feats: list[StudyFeatures]
    truths: list[dict | None]
    model: Any
    spinefm_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)

    def subset(self, idx) -> Prepared:
        idx = list(idx)
        return Prepared(
            [self.entries[i] for i in idx],
            [self.feats[i] for i in idx],
            [self.truths[i] for i in idx],
            self.model,
            self.spinefm_dir,
            self.seconds,
        )


@dataclass
class AgentsTrainConfig:
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)
    localization: LocalizationConfig = field(default_factory=LocalizationConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    report: bool = True  # train the Medical Report Agent when ml.agents.report is importable
    report_preset: str = "gemma-3-270m"  # a decoder that reads its prompt; "tiny" for tests
    report_stage0_steps: int | None = None  # None = the report preset's YAML (tiny: decoder LM pretraining)
    report_stage1_steps: int | None = None
    report_stage2_steps: int | None = None
    report_overrides: dict[str, Any] = field(default_factory=dict)
    # the report agent's training tokens come from diagnosis agents that did not see the study:
    # patient-level k-fold cross-fitting (< 2: in-sample, only for experiments)
    report_crossfit_folds: int = 5
    # the cross-fitted heads' cell stride: 32 trains ~9x faster than the served stride-16 head,
    # at a slightly lower AUROC, so the report agent learns to trust its tokens no more than due
    report_crossfit_stride: int = 32


def prepare(
    manifest: str | Path,
    spinefm: str | Path,
    keep_pixels: bool = False,
    cache_dir: str | Path | None = None,
    studies_per_batch: int = 8,
    diagnosis: DiagnosisConfig | None = None,
) -> Prepared:
    """Load, preprocess (through the slice cache) and encode every study of ``manifest`` once.

    With a dense diagnosis head (``diagnosis.head == "dense"``) the slices are preprocessed at
    the larger of SpineFM's and the head's size (SpineFM resizes to its own) and the head's
    trunk cells are computed here, while the pixels are still in memory."""
    from tqdm import tqdm

    from ml.spinefm.io import load_spinefm

    spinefm = Path(spinefm)
    model = load_spinefm(spinefm)
    entries, base = load_manifest(manifest)
    dense = diagnosis if diagnosis is not None and diagnosis.head == "dense" else None
    size = max(model.img_size, dense.dense_size) if dense else model.img_size
    loader = StudyLoader(base, PreprocessConfig(size=size), SliceCache(cache_dir or default_cache_dir() / "slices"))
    trunk = None
    if dense:
        from ml.agents.dense import dense_cells, load_trunk

        trunk = load_trunk()
    t0 = time.perf_counter()
    feats: list[StudyFeatures] = []
    starts = range(0, len(entries), studies_per_batch)

    def load(i: int) -> list:
        return [loader.load(e, geometry=True) for e in entries[i : i + studies_per_batch]]

    # the next batch is read and preprocessed in a thread while this one is encoded: the DICOM
    # decoding, resizing and slice-cache writes overlap the networks' forwards on the other core
    with ThreadPoolExecutor(1, thread_name_prefix="load-studies") as pool:
        pending = pool.submit(load, starts[0]) if starts else None
        for n in tqdm(range(len(starts)), desc="encode studies", unit="batch", leave=False):
            assert pending is not None
            batch = pending.result()
            pending = pool.submit(load, starts[n + 1]) if n + 1 < len(starts) else None
            for f in encode_studies(batch, model, studies_per_batch=studies_per_batch):
                if dense:
                    dense_cells(f, dense, trunk)
                if not keep_pixels:  # the agents only need the features: free the memory
                    for s in f.study.series:
                        # a new empty array, not ``pixels[:0]``: a view keeps the whole volume alive
                        # (every encoded study's volumes, which bounded the training set on 24 GB)
                        s.pixels = np.empty((0, *s.pixels.shape[1:]), s.pixels.dtype)
                feats.append(f)
    enc = time.perf_counter() - t0
    log.info("encoded %d studies in %.1f s (%.2f studies/s)", len(feats), enc, len(feats) / max(enc, 1e-9))
    truths = [load_truth(base / e.ground_truth) if e.ground_truth else None for e in entries]
    return Prepared(entries, feats, truths, model, spinefm, {"encode": enc})


def cross_fitted_conditions(
    prep: Prepared, cfg: DiagnosisConfig, folds: int = 5, seed: int = 0
) -> list[list[ConditionResult]]:
    """Out-of-fold diagnosis outputs for every study of ``prep``: each study's conditions come
    from agents trained on the other patients' folds (patient-level k-fold).

    Why: at inference the report agent reads the calls of diagnosis agents that never saw the
    study; trained on in-sample calls (near-perfect on the training studies) it would learn to
    trust its tokens more than they deserve on a new study.
    """
    from ml.data.splits import kfold

    out: list[list[ConditionResult] | None] = [None] * len(prep.feats)
    for train, test in kfold(prep.entries, folds, seed):
        if not test:
            continue
        agents = train_diagnosis([prep.feats[i] for i in train], cfg, [prep.truths[i] for i in train])
        for i, conds in zip(test, agents.predict([prep.feats[i] for i in test]), strict=True):
            out[i] = conds
    missing = [i for i, c in enumerate(out) if c is None]
    if missing:  # cannot happen with kfold (every study is in one test fold); guard the invariant
        raise RuntimeError(f"studies {missing} got no out-of-fold diagnosis")
    return out  # type: ignore[return-value]


def report_examples(prep: Prepared, diagnosis, localization, index, conds: list | None = None) -> list:
    """Training examples of the Medical Report Agent: the agents' outputs on each training study
    (``conds``: cross-fitted diagnosis calls, see ``cross_fitted_conditions``; None = the given
    agents' in-sample calls), the most similar *other* patient's report, and the study's own report."""
    from ml.agents.report import ReportExample

    if conds is None:
        conds = diagnosis.predict(prep.feats)
    for f, c in zip(prep.feats, conds, strict=True):
        if f.study.report:
            localize_with(diagnosis, localization, f, [x for x in c if x.present])
    # ranked by these calls and levels, as the pipeline ranks after diagnosis and localization
    sims = index.similar(prep.feats, conds)
    out = []
    for f, c, s in zip(prep.feats, conds, sims, strict=True):
        if not f.study.report:
            continue
        out.append(
            ReportExample(
                t1_slices=[e.slices for _, e in f.pairs(("T1",))],
                t2_slices=[e.slices for _, e in f.pairs(("T2",))],
                conditions=c,
                similar_report=s[0].report if s else None,
                region=f.study.region or "lumbar",
                target=f.study.report,
            )
        )
    return out


def build_pipeline(prep: Prepared, out_dir: str | Path, cfg: AgentsTrainConfig | None = None) -> Path:
    """Train every agent on ``prep`` and write a complete pipeline folder at ``out_dir``."""
    cfg = cfg or AgentsTrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    components: dict[str, dict[str, str]] = {}

    dst = out / "spinefm"
    dst.mkdir(exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copy2(prep.spinefm_dir / name, dst / name)
    components["spinefm"] = {"path": "spinefm", "version": spinefm_version(dst)}

    t0 = time.perf_counter()
    diag = train_diagnosis(prep.feats, cfg.diagnosis, prep.truths)
    components["diagnosis"] = {"path": "diagnosis", "version": diag.save(out / "diagnosis")}
    times["diagnosis"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # the dense head localises from its cells: only the level head and side rules are needed then
    loc = train_localization(prep.feats, prep.truths, cfg.localization, slice_heads=cfg.diagnosis.head != "dense")
    components["localization"] = {"path": "localization", "version": loc.save(out / "localization")}
    times["localization"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    index = build_index(prep.feats, prep.model, cfg.retrieval)
    components["retrieval"] = {"path": "retrieval", "version": index.save(out / "retrieval")}
    times["retrieval"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    components["report"] = _train_report(prep, out, cfg, diag, loc, index)
    times["report"] = time.perf_counter() - t0

    digest = "-".join(components[k].get("version", "none").split("-")[-1][:6] for k in sorted(components))
    write_pipeline_json(out, f"{CODE_VERSION}+{digest}", CODE_VERSION, cfg.pipeline, components)
    (out / "train_times.json").write_text(json.dumps({**prep.seconds, **times}, indent=2))
    log.info("pipeline written to %s (%s)", out, ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    return out


def _train_report(prep: Prepared, out: Path, cfg: AgentsTrainConfig, diag, loc, index) -> dict[str, str]:
    if not cfg.report:
        return {"skipped": "report agent training disabled (report=false)"}
    try:
        from ml.agents.report import train_report_agent
    except Exception as exc:  # B's package not importable in this checkout
        log.warning("Medical Report Agent not trained: %s", exc)
        return {"skipped": f"ml.agents.report not importable: {exc}"}
    try:
        conds = None
        oof = getattr(diag, "out_of_fold", None)
        if oof is not None:  # fold heads (``dense_folds``): their out-of-fold calls are the cross-fit
            conds = diag.results(oof)
        elif cfg.report_crossfit_folds >= 2:
            d = cfg.diagnosis
            if d.head == "dense":
                stride = max(d.dense_stride, cfg.report_crossfit_stride)
                d = replace(d, dense_stride=stride, dense_box_stride=max(d.dense_box_stride, stride))
            conds = cross_fitted_conditions(prep, d, cfg.report_crossfit_folds, d.seed)
        examples = report_examples(prep, diag, loc, index, conds)
        folder = train_report_agent(
            examples,
            out / "report",
            preset=cfg.report_preset,
            stage0_steps=cfg.report_stage0_steps,
            stage1_steps=cfg.report_stage1_steps,
            stage2_steps=cfg.report_stage2_steps,
            overrides=cfg.report_overrides or None,
        )
        rel = Path(folder).resolve().relative_to(out.resolve())
        import hashlib

        files = sorted(p for p in Path(folder).rglob("*.safetensors"))
        h = hashlib.sha1(b"".join(p.read_bytes()[:1_000_000] for p in files)).hexdigest()[:10]
        return {"path": str(rel), "version": f"report-{h}"}
    except Exception as exc:
        log.exception("Medical Report Agent training failed; pipelines will use the template draft")
        shutil.rmtree(out / "report", ignore_errors=True)
        return {"skipped": f"report agent training failed: {type(exc).__name__}: {exc}"}


def split_indices(entries: list[StudyEntry], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    from ml.data.splits import train_test_split

    return train_test_split(entries, test_fraction, seed)


__all__ = ["AgentsTrainConfig", "Prepared", "build_pipeline", "prepare"]
