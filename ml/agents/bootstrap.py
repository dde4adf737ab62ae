"""A small, real, fast pipeline for tests, the demo and a first run: ``ensure_tiny_pipeline()``.

Steps (all through the production code paths, only smaller):

1. ``ml synth`` studies (sag T1, sag T2, sag STIR, ax T2): ``--fast`` matrices for the tests'
   pipeline, realistic ones (``matrix_scale``) and enriched prevalence for the demo's;
2. SpineFM ``tiny`` trained by the ``align`` stage of ``ml.train`` (tri-modal InfoNCE against
   MiniLM, from random initialisation: the SSL stages are left out to stay inside the budget);
3. every agent trained on those studies (``ml.agents.train.build_pipeline``) with the dense
   diagnosis head (the measured default, docs/agents.md), the Medical Report
   Agent from a 500-step cached text LM (``ml.agents.report.pretrain``) plus a few image steps,
   when ``ml.agents.report`` is importable (else it is skipped with the reason in
   ``pipeline.json`` and drafts use the structured template).

Two presets: ``TINY`` (the tests: 16 small studies, plumbing only, at chance) and ``DEMO``
(what ``scripts/demo`` serves: enough realistic studies that the agents see the common findings;
its held-out figures are in docs/agents.md, measured with ``python -m ml agents evaluate
--pipeline``).

``ensure_tiny_pipeline`` caches the result under ``$SPINEREVIEW_CACHE/pipelines/<name>-<key>`` where the
key hashes ``CODE_VERSION`` and the parameters. A file lock makes parallel processes (pytest
workers, the demo) build it once; the folder appears by an atomic rename when complete, so a
reader never sees half a pipeline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ml.agents.diagnosis import DiagnosisConfig
from ml.agents.train import CODE_VERSION, AgentsTrainConfig, build_pipeline, prepare
from ml.data.cache import default_cache_dir

log = logging.getLogger(__name__)

# 2: report agent from the cached tiny text LM; 3: its tokens are cross-fitted; 4: dense head;
# 5: stride-16 dense head with the box regressor, sagittal-first localization; 6: retrieval in
# finding space (the index stores its reports' findings), learnt central margins; 7: the demo's
# head with the balanced cell loss, side read on the sagittal box, the demo writes with gemma-3-270m;
# 9: the demo's head reads each cell's vertical neighbours (``DiagnosisConfig.dense_context``);
# 10: the demo's head learns from complete negatives (``DiagnosisConfig.dense_complete_negatives``);
# 11: the demo's head reads each cell against the sagittal slices at the same place
# (``DiagnosisConfig.dense_slice_contrast``); 12: the demo's head as three patient-fold heads served
# as their mean, calibrated out-of-fold on every training study (``DiagnosisConfig.dense_folds``);
# 13: the writer writes from ALIGNMENT on, the factual sections are the data's (``prompt.writer_text``);
# 14: the demo's head also sees canal tiles (``DiagnosisConfig.dense_canal_mm``) and trains in
# bfloat16 where native (``DiagnosisConfig.dense_precision``); 15: the head's artifact carries,
# per condition, the share of training boxes a canal tile held whole (``box_canal_fit``), which
# decides the tiles its boxes are placed on
BOOTSTRAP_VERSION = "15"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class BootstrapParams:
    name: str = "tiny"  # folder prefix in the cache
    studies: int = 16  # generated studies (all used for training)
    seed: int = 3
    series: str = "sag_t1,sag_t2,sag_stir,ax_t2"
    matrix_scale: float | None = None  # None: ``--fast`` matrices (128/96 px); else realistic, scaled
    prevalence: str = "realistic"  # "realistic" | "enriched" (every condition has positives to learn)
    head: str = "dense"  # the diagnosis head (``DiagnosisConfig.head``)
    dense_folds: int = 0  # >= 2: the dense head as k fold heads (``DiagnosisConfig.dense_folds``)
    dense_cell_loss: str = "study"  # ``DiagnosisConfig.dense_cell_loss``
    dense_context: bool = False  # ``DiagnosisConfig.dense_context``
    dense_complete_negatives: bool = False  # ``DiagnosisConfig.dense_complete_negatives``
    dense_slice_contrast: bool = False  # ``DiagnosisConfig.dense_slice_contrast``
    dense_canal_mm: float = 0.0  # ``DiagnosisConfig.dense_canal_mm`` (0: no canal tiles)
    dense_precision: str = "float32"  # ``DiagnosisConfig.dense_precision``
    align_steps: int = 6  # SpineFM align optimizer steps
    align_batch: int = 8
    max_slices: int = 4  # slices per series during alignment
    report: bool = True  # train the Medical Report Agent when importable
    report_preset: str = "tiny"  # the writer's decoder (ml/configs/agents/report*.yaml)
    report_stage0_steps: int = 500  # the cached text-only tiny LM (~4 min once per machine; the YAML's 1500: ~12 min)
    report_stage1_steps: int = 4  # projector only
    report_stage2_steps: int = 4  # projector + LoRA
    report_lr_stage2: float | None = None  # None: the preset's YAML
    report_warmup: int | None = None  # warm-up steps of each stage; None: the preset's YAML
    report_crossfit_folds: int = 5  # the report agent's tokens come from diagnosis agents of other folds

    def diagnosis_config(self) -> DiagnosisConfig:
        """The diagnosis head this recipe trains (the rest of ``DiagnosisConfig`` at its defaults)."""
        return DiagnosisConfig(
            head=self.head,
            dense_folds=self.dense_folds,
            dense_cell_loss=self.dense_cell_loss,
            dense_context=self.dense_context,
            dense_complete_negatives=self.dense_complete_negatives,
            dense_slice_contrast=self.dense_slice_contrast,
            dense_canal_mm=self.dense_canal_mm,
            dense_precision=self.dense_precision,
        )

    def key(self) -> str:
        """The cached pipeline's key: the code, the recipe and the generator's version (a generator
        change gives other training studies, so a pipeline trained on the old ones is not reused)."""
        from ml.data.synthetic import dicom_writer  # read at call time: the version in force now

        blob = json.dumps(
            {"code": CODE_VERSION, "bootstrap": BOOTSTRAP_VERSION, "generator": dicom_writer.GENERATOR_VERSION}
            | asdict(self),
            sort_keys=True,
        )
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


TINY = BootstrapParams(dense_canal_mm=80.0)  # the tests exercise the canal tiles end to end
# the demo's pipeline: realistic matrices (half size), every condition with positives to learn
DEMO = BootstrapParams(
    name="demo",
    studies=260,
    seed=41,
    matrix_scale=0.5,
    prevalence="enriched",
    align_steps=30,
    dense_cell_loss="balanced",  # a small lesion's box cells weigh as much as the rest of its study
    dense_context=True,  # the cells above and below: level 0.816 -> 0.831 on 300 held-out (docs/agents.md)
    dense_complete_negatives=True,  # a positive study's cells away from its findings (docs/agents.md)
    dense_slice_contrast=True,  # each cell against the sagittal slices at its place (docs/agents.md)
    # the three central sagittal slices also as 80 mm tiles down the canal: intradural lesion
    # 0.667 -> 0.845 and 0.693 -> 0.829 on two held-out sets (docs/agents.md, "canal tiles")
    dense_canal_mm=80.0,
    # the head's matrix products in bfloat16 where native (AMX): the same held-out figures to
    # 0.001, its training 3.5 s an epoch against 4.1 (docs/agents.md, "canal tiles")
    dense_precision="auto",
    # three fold heads served as their mean: every study trains two of them and calibrates the third;
    # their out-of-fold calls are the report agent's cross-fitted tokens (no extra heads to train)
    dense_folds=3,
    report_preset="gemma-3-270m",  # a pretrained decoder that reads its prompt (docs/report-agent.md)
    report_stage1_steps=10,
    report_stage2_steps=30,
    report_lr_stage2=5e-4,  # few steps: the LoRA learning rate the claim benchmark trains with
    report_warmup=3,
    report_crossfit_folds=3,
)
# the demo's recipe on 900 training studies: where every condition is above 0.75 on both held-out
# sets (docs/agents.md, "900 training studies")
LARGE = replace(DEMO, name="large", studies=900)
PRESETS = {"tiny": TINY, "demo": DEMO, "large": LARGE}


def bootstrap(out: str | Path, params: BootstrapParams | None = None, work: str | Path | None = None) -> Path:
    """Build a complete tiny pipeline folder at ``out`` (synthesis -> SpineFM -> agents)."""
    from ml.data.synthetic.cli import main as synth_main
    from ml.train.cli import main as train_main

    p = params or BootstrapParams()
    out = Path(out)
    work = Path(work) if work else out.parent / f".{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with decoder_converted_alongside(p):
        t0 = time.perf_counter()
        times: dict[str, float] = {}
        data = work / "data"
        log.info("%s pipeline, step 1/4: generating %d training studies", p.name, p.studies)
        size = ["--fast"] if p.matrix_scale is None else ["--matrix-scale", str(p.matrix_scale)]
        rc = synth_main(
            ["--studies", str(p.studies), "--seed", str(p.seed), "--out", str(data), "--series", p.series,
             "--prevalence", p.prevalence, "--workers", str(min(2, os.cpu_count() or 1)), *size]
        )  # fmt: skip
        if rc:
            raise RuntimeError(f"ml synth failed with exit code {rc}")
        times["synth"] = time.perf_counter() - t0

        t = time.perf_counter()
        log.info("%s pipeline, step 2/4: aligning SpineFM (%d steps)", p.name, p.align_steps)
        run = work / "align"
        train_main(
            [
                "align",
                str(CONFIGS / "tiny" / "align.yaml"),
                f"data.manifest={data / 'manifest.jsonl'}",
                "data.test_fraction=0.0",
                "data.num_workers=0",
                f"data.max_slices={p.max_slices}",
                f"optim.max_steps={p.align_steps}",
                "optim.warmup_steps=2",
                f"optim.batch_size={p.align_batch}",
                f"run.out_dir={run}",
                "run.resume=false",
                "run.log_every=4",
                f"run.seed={p.seed}",
            ]
        )
        times["spinefm_align"] = time.perf_counter() - t

        t = time.perf_counter()
        log.info("%s pipeline, step 3/4: encoding the training studies", p.name)
        diagnosis = p.diagnosis_config()
        prep = prepare(data / "manifest.jsonl", run / "final", diagnosis=diagnosis)
        times["encode"] = time.perf_counter() - t
        cfg = AgentsTrainConfig(
            diagnosis=diagnosis,
            report=p.report,
            report_preset=p.report_preset,
            report_stage0_steps=p.report_stage0_steps,
            report_stage1_steps=p.report_stage1_steps,
            report_stage2_steps=p.report_stage2_steps,
            report_crossfit_folds=p.report_crossfit_folds,
            report_overrides={
                "train.batch_size": 2,
                **({"train.warmup": p.report_warmup} if p.report_warmup else {}),
                **({"train.lr_stage2": p.report_lr_stage2} if p.report_lr_stage2 else {}),
            },
        )
        t = time.perf_counter()
        log.info("%s pipeline, step 4/4: training the agents (diagnosis, localization, retrieval, report)", p.name)
        build_pipeline(prep, out, cfg)
        times["agents"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    (out / "bootstrap.json").write_text(json.dumps({"params": asdict(p), "seconds": times}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    log.info("bootstrap pipeline in %.0f s: %s", times["total"], times)
    return out


@contextlib.contextmanager
def decoder_converted_alongside(p: BootstrapParams) -> Iterator[None]:
    """Gemma-3-270M's one-time conversion (``ensure_gemma_270m``: about a minute of one core) run
    in a background process at idle priority while the steps before the report agent's run.

    Why: on 2 cores the alignment and encoding steps leave part of a core idle (torch's small
    batches, Python between them), and a process at idle priority (``run_when_idle``) takes only
    what they leave, so the conversion no longer adds its time to the report step. The report step's own
    ``ensure_gemma_270m`` waits for it (a file lock) or, should it have failed, converts itself.
    """
    from ml.agents.report.decoders import gemma_converted, gemma_dir

    if not p.report or p.report_preset != "gemma-3-270m" or gemma_converted(gemma_dir()):
        yield
        return
    # its own process, which exits when done (its ~1.7 GB go back before the head trains)
    job = multiprocessing.get_context("spawn").Process(
        target=_run_when_idle, args=(_convert_decoder,), name="gemma-conversion", daemon=True
    )
    job.start()
    try:
        yield
    finally:
        job.join()
        if job.exitcode:  # the report step then converted it itself
            log.warning("background conversion of the report decoder failed (exit %s)", job.exitcode)


def _run_when_idle(fn: Callable[[], object]) -> None:
    run_when_idle()
    fn()


def run_when_idle() -> None:
    """This process (and what it starts) gets a core only when nothing else wants it: Linux's
    SCHED_IDLE, else the lowest nice. A niced process still takes a share of busy cores (nice 10:
    about a tenth of each), which slowed the first run's synthesis by 20 s."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not permitted
        os.nice(19)


def _convert_decoder() -> str:
    import torch

    from ml.agents.report.decoders import ensure_gemma_270m

    torch.set_num_threads(1)
    return str(ensure_gemma_270m())


def ensure_tiny_pipeline(cache_dir: Path | None = None, params: BootstrapParams | None = None) -> Path:
    """The cached pipeline folder of ``params`` (default ``TINY``, the tests'), built once (file
    lock + atomic rename) if missing."""
    from filelock import FileLock

    p = params or TINY
    root = Path(cache_dir) if cache_dir else default_cache_dir() / "pipelines"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{p.name}-{p.key()}"
    if (target / "pipeline.json").exists():
        return target
    with FileLock(str(root / f"{p.name}-{p.key()}.lock"), timeout=3600):
        if (target / "pipeline.json").exists():  # another process built it while we waited
            return target
        tmp = root / f".{p.name}-{p.key()}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            bootstrap(tmp, p, work=root / f".{p.name}-{p.key()}.work-{os.getpid()}")
            os.replace(tmp, target)  # atomic on one filesystem
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
