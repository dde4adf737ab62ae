"""Generate one synthetic study end to end: patient → anatomy → series → DICOM + truth.

Everything random flows from ``SeedSequence([seed, index])`` split into independent
streams (anatomy, texture/noise, report), so a study does not depend on which worker
made it or on the other studies, and the same seed reproduces identical bytes.

A drawn patient whose findings cannot all be placed in the drawn anatomy (``PlacementError``)
is re-drawn from ``SeedSequence([seed, index, attempt])``: the study is still made, still
deterministic, and ``truth["generator"]["attempt"]`` records the redraw. No seed can stop a
dataset, and no index is silently dropped.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.manifest import SeriesEntry, StudyEntry
from ml.data.synthetic.anatomy import Spine, build_labels, sample_spine
from ml.data.synthetic.dicom_writer import GENERATOR_VERSION, StudyInfo, uid, write_series
from ml.data.synthetic.findings import Finding, Patient, sample_patient
from ml.data.synthetic.ground_truth import key_slices
from ml.data.synthetic.lesions import PlacementError, paint_findings
from ml.data.synthetic.physics import DEFAULT_SERIES, SERIES_KEYS, protocol, signal_lut
from ml.data.synthetic.priors import PRIOR_SUFFIX, PriorPlan, has_progression, prior_patient, prior_streams, progression
from ml.data.synthetic.render import Stack, Texture, degrade, plan_axial, plan_sagittal, tissue_sampler
from ml.data.synthetic.report import PriorMention, write_report
from ml.data.synthetic.study_labels import labels_from_findings, rsna_grades
from ml.data.synthetic.tissues import T, relax_table
from ml.data.synthetic.vendors import vendor

MAX_ATTEMPTS = 8  # re-draws of a patient whose findings cannot be placed (a handful in 10^3 studies)


@dataclass(frozen=True)
class StudyConfig:
    """Parameters of one study (the CLI builds one per index)."""

    seed: int
    index: int
    region: str = "lumbar"
    vendor: str = "GE"
    cohort: str = "general"
    series: tuple[str, ...] = DEFAULT_SERIES
    fast: bool = False
    matrix_scale: float = 1.0
    prevalence: str = "realistic"
    force: tuple[str, ...] = ()
    id_prefix: str = "SYN"

    @property
    def patient_key(self) -> str:
        return f"{self.id_prefix}-{self.index + 1:04d}"


Drawn = tuple[int, Patient, Spine, np.ndarray, tuple[np.random.Generator, ...]]  # see draw_anatomy


@dataclass
class RenderedSeries:
    key: str
    description: str
    plane: str
    sequence_class: str
    uid: str
    folder: str
    stack: Stack
    sops: list[str]
    pixels: np.ndarray | None = None  # kept only when asked (contact sheets, tests)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Study:
    config: StudyConfig
    patient: Patient
    spine: Spine
    labels_volume: np.ndarray
    series: list[RenderedSeries]
    entry: StudyEntry
    truth: dict[str, Any]
    info: StudyInfo | None = None
    prior: Study | None = None  # the patient's earlier study, made with this one (``priors``)


def _plan(sp: Spine, cfg: StudyConfig, rng: np.random.Generator) -> tuple[Stack, Stack]:
    spec = sp.region
    ven = vendor(cfg.vendor)
    if cfg.fast:
        sag_m, ax_m, n_sag, thick, per = 128, 96, 9, spec.sag_thickness * 1.5, 2
    else:
        sag_m = int(round(ven.sag_matrix * cfg.matrix_scale / 16) * 16)
        ax_m = int(round(ven.ax_matrix * cfg.matrix_scale / 16) * 16)
        n_sag, thick, per = spec.sag_slices + (2 if ven.key == "Philips" else 0), spec.sag_thickness, spec.ax_per_disc
    x0 = float(rng.normal(0, 1.5))
    sag = plan_sagittal(sp.grid, spec.fov_sag, sag_m, n_sag, thick, spec.sag_gap, x0)
    if not ven.sag_right_to_left:
        sag.slices.reverse()
    centers = []
    for d in sp.discs:
        if d.fused or d.name not in spec.levels():
            continue
        tg, _ = sp.curve.frame(d.s)
        tilt = np.deg2rad(rng.normal(0, 2.0))
        ny, nz = -tg[0], -tg[1]
        ny, nz = ny * np.cos(tilt) - nz * np.sin(tilt), ny * np.sin(tilt) + nz * np.cos(tilt)
        p = sp.patient_point(d.s + rng.normal(0, 0.5), 4.0)
        centers.append((d.name, p, np.array([0.0, ny, nz])))
    ax = plan_axial(centers, spec.fov_ax, ax_m, per, spec.ax_thickness, 0.4)
    return sag, ax


def _to_stored(stack: np.ndarray, target: float, slope: float | None, bits: int) -> np.ndarray:
    """Scanner-like auto-scaling of a float series into unsigned integers."""
    sub = stack[:, ::4, ::4]
    p = float(np.percentile(sub, 99.5)) or 1.0
    scale = target / p / (slope or 1.0)
    return np.clip(np.rint(stack * scale), 0, 2**bits - 1).astype(np.uint16)


def study_seed(cfg: StudyConfig, attempt: int = 0) -> np.random.SeedSequence:
    """The root of every random stream of a study; attempt > 0 is a re-draw (see module doc)."""
    return np.random.SeedSequence([cfg.seed, cfg.index] if attempt == 0 else [cfg.seed, cfg.index, attempt])


def draw_anatomy(
    cfg: StudyConfig,
    voxel: float,
    *,
    attempt: int | None = None,
    transform: Callable[[Patient], Patient] | None = None,
) -> tuple[int, Patient, Spine, np.ndarray, tuple[np.random.Generator, ...]]:
    """Patient, spine and painted label volume of study ``cfg``, re-drawn until every finding
    can be placed. Returns (attempt, patient, spine, labels, the 4 streams: anatomy, texture,
    report, noise) so that the rest of the study continues from the same streams.

    ``attempt`` draws that attempt only (a prior study is the patient of the current study's
    attempt); ``transform`` turns the drawn patient into the one painted (the patient years
    earlier) before the spine is laid out, so both studies share one skeleton.
    """
    last: PlacementError | None = None
    for n in range(MAX_ATTEMPTS) if attempt is None else (attempt,):
        rngs = tuple(np.random.default_rng(s) for s in study_seed(cfg, n).spawn(4))
        rng_a = rngs[0]
        drawn = sample_patient(rng_a, cfg.region, cfg.cohort, cfg.prevalence, cfg.force)
        patient = transform(drawn) if transform is not None else drawn
        sp = sample_spine(rng_a, cfg.region, drawn.age, patient.mods, voxel)
        labels = build_labels(sp)
        try:
            paint_findings(sp, labels, patient.findings, rng_a)
        except PlacementError as exc:
            last = exc
            continue
        return n, patient, sp, labels, rngs
    draws = MAX_ATTEMPTS if attempt is None else 1
    raise PlacementError(f"study {cfg.seed}/{cfg.index}: no placeable patient in {draws} draws ({last})")


def generate_study(
    cfg: StudyConfig, out_root: Path | None, keep_pixels: bool = False, prior: PriorPlan | None = None
) -> Study:
    """Generate (and, if out_root is given, write) one study.

    out_root is the dataset folder: files go to ``out_root/studies/<patient_key>/``. ``prior``
    also makes the patient's earlier study (``Study.prior``, files in
    ``studies/<patient_key>-P1/``) and names its date in the current report's COMPARISON.
    """
    for key in cfg.series:
        if key not in SERIES_KEYS:
            raise ValueError(f"unknown series {key!r}; known: {', '.join(SERIES_KEYS)}")
    voxel = 2.4 if cfg.fast else 1.2
    drawn = draw_anatomy(cfg, voxel)
    attempt, patient, _, _, (_, _, rng_r, _) = drawn
    d0 = date(2021, 1, 4) + timedelta(days=int(rng_r.integers(0, 1400)))
    info = StudyInfo(
        study_uid=uid(cfg.seed, cfg.index, "study", cfg.id_prefix),
        frame_uid=uid(cfg.seed, cfg.index, "frame", cfg.id_prefix),
        patient_name=f"SYNTHETIC^SPINE{cfg.index + 1:04d}",
        patient_id=cfg.patient_key,
        birth_date=f"{d0.year - patient.age}0101",
        sex=patient.sex,
        age=patient.age,
        study_date=d0.strftime("%Y%m%d"),
        study_time=f"{int(rng_r.integers(7, 19)):02d}{int(rng_r.integers(0, 60)):02d}00",
        accession=f"SYNACC{cfg.seed % 1000:03d}{cfg.index + 1:05d}",
        study_id=str(cfg.index + 1),
        description=f"MRI {cfg.region.upper()} SPINE",
        weight_kg=round(float(rng_r.normal(78, 14)), 1),
    )
    # each stream is its own generator, consumed in the order it always was: a study made with a
    # prior has the same images and headers as one made without
    tab, tex, sag, ax = _layout(cfg, drawn)
    if prior is None:
        return _render(cfg, out_root, keep_pixels, drawn, info, tab, tex, sag, ax, Path("studies") / cfg.patient_key)
    prior_date = prior.date_before(d0)
    prior_info = replace(
        info,
        study_uid=uid(cfg.seed, cfg.index, "study", cfg.id_prefix, "prior"),
        frame_uid=uid(cfg.seed, cfg.index, "frame", cfg.id_prefix, "prior"),
        age=prior_date.year - int(info.birth_date[:4]),
        study_date=prior_date.strftime("%Y%m%d"),
        accession=f"SYNACC{cfg.seed % 1000:03d}{cfg.index + 1:05d}P",
        study_id=f"{cfg.index + 1}P",
    )
    kind, before = _draw_prior(cfg, voxel, attempt, patient, prior.kind, prior_info.age)
    link = {"kind": kind, "date": prior_info.study_date, "study_uid": prior_info.study_uid}
    current = _render(
        cfg, out_root, keep_pixels, drawn, info, tab, tex, sag, ax, Path("studies") / cfg.patient_key,
        compared=(prior_date, kind, before[1].findings), extra={"prior": link},
    )  # fmt: skip
    p_tab, p_tex, p_sag, p_ax = _layout(cfg, before)
    current.prior = _render(
        cfg, out_root, keep_pixels, before, prior_info, p_tab, p_tex, p_sag, p_ax,
        Path("studies") / f"{cfg.patient_key}{PRIOR_SUFFIX}", uid_tag=("prior",),
        extra={"later": {"kind": kind, "date": info.study_date, "study_uid": info.study_uid}},
    )  # fmt: skip
    return current


def _draw_prior(
    cfg: StudyConfig, voxel: float, attempt: int, patient: Patient, kind: str, age: int
) -> tuple[str, Drawn]:
    """The patient's anatomy years earlier, from the current study's attempt; a progressed
    course whose milder findings cannot be placed falls back to unchanged (always placeable: the
    current study's own draw). The prior has its own scan noise and report wording."""
    kind = kind if has_progression(patient.findings) else "unchanged"
    for course in dict.fromkeys((kind, "unchanged")):
        transform = functools.partial(_as_prior, course=course, age=age)
        try:
            n, before, sp, labels, (rng_a, rng_t, _, _) = draw_anatomy(cfg, voxel, attempt=attempt, transform=transform)
        except PlacementError:
            continue
        rng_r, rng_n = prior_streams(cfg.seed, cfg.index)
        return course, (n, before, sp, labels, (rng_a, rng_t, rng_r, rng_n))
    raise PlacementError(f"study {cfg.seed}/{cfg.index}: its prior cannot be placed")


def _as_prior(patient: Patient, *, course: str, age: int) -> Patient:
    return prior_patient(patient, course, age)


def _layout(cfg: StudyConfig, drawn: Drawn) -> tuple[dict[str, np.ndarray], Texture, Stack, Stack]:
    """Relaxation table, tissue texture and slice plans of a drawn study (anatomy/texture streams)."""
    _, _, sp, _, (rng_a, rng_t, _, _) = drawn
    tab = relax_table(sp.marrow_ff, vendor(cfg.vendor).field_t)
    tex = Texture(sp.grid, rng_t)
    sag, ax = _plan(sp, cfg, rng_a)
    return tab, tex, sag, ax


def _render(
    cfg: StudyConfig,
    out_root: Path | None,
    keep_pixels: bool,
    drawn: Drawn,
    info: StudyInfo,
    tab: dict[str, np.ndarray],
    tex: Texture,
    sag: Stack,
    ax: Stack,
    root: Path,
    compared: tuple[date, str, list[Finding]] | None = None,
    extra: dict[str, Any] | None = None,
    uid_tag: tuple[str, ...] = (),
) -> Study:
    """Series, truth, report and manifest entry of one drawn study (written when out_root is set).

    ``compared``: (date, course, findings) of the patient's prior, for the report's COMPARISON.
    """
    attempt, patient, sp, labels, (_, _, rng_r, rng_n) = drawn
    ven = vendor(cfg.vendor)
    voxel = 2.4 if cfg.fast else 1.2
    tex_amp = tab["tex"].astype(np.float32)
    coil_y = float(sp.patient_point(sp.verts[len(sp.verts) // 2].s, sp.verts[0].canal_ap + sp.muscle + sp.back_fat)[1])
    key = cfg.patient_key
    study_uid = info.study_uid
    series: list[RenderedSeries] = []
    for n, skey in enumerate(cfg.series, 1):
        seq = protocol(skey, ven.te_scale, ven.tr_scale)
        lut = signal_lut(tab, seq)
        sampler = tissue_sampler(labels, sp.grid, lut, tex_amp, tex)
        stack = sag if seq.plane == "sagittal" else ax
        ref = float(max(lut[T.CSF], lut[T.FAT], lut[T.MARROW], lut[T.MUSCLE]))
        imgs = np.stack([degrade(sampler.slice(g), g, ven.degradation, coil_y, ref, rng_n) for g in stack.slices])
        bits = 16 if ven.key == "Philips" else 12
        stored = _to_stored(imgs, ven.target, ven.rescale_slope, bits)
        desc = ven.descriptions[skey]
        s_uid = uid(cfg.seed, cfg.index, "series", skey, cfg.id_prefix, *uid_tag)
        folder = f"{n:02d}_{skey}"
        sops = (
            write_series(out_root / root / folder, stored, stack.slices, seq, ven, info, s_uid, n, desc)
            if out_root is not None
            else [uid(s_uid, k) for k in range(len(stack.slices))]
        )
        meta = {"tr": seq.tr, "te": seq.te, "ti": seq.ti, "fat_sat": seq.fat_sat, "contrast": seq.contrast}
        series.append(
            RenderedSeries(
                skey,
                desc,
                seq.plane,
                seq.sequence_class,
                s_uid,
                folder,
                stack,
                sops,
                stored if keep_pixels else None,
                meta,
            )
        )

    findings_json = []
    for f in patient.findings:
        fj = f.to_json()
        fj["key_slices"] = {s.key: key_slices(sp.grid, f, s.stack.slices, s.sops) for s in series}
        fj["voxels"] = f.mask.voxel_count() if f.mask is not None else 0
        findings_json.append(fj)
    labels_ = labels_from_findings(patient.findings)
    levels = sp.region.levels()
    comparison = bool(rng_r.random() < 0.3)
    prior = None
    if compared is not None:
        prior = PriorMention(compared[0], compared[1], progression(compared[2], patient.findings))
    report = write_report(rng_r, patient, cfg.region, levels, [s.description for s in series], comparison, prior)
    truth: dict[str, Any] = {
        "generator": {
            "name": "spinereview-synth",
            "version": GENERATOR_VERSION,
            "seed": cfg.seed,
            "index": cfg.index,
            "fast": cfg.fast,
            "voxel_mm": voxel,
            **({"attempt": attempt} if attempt else {}),
        },
        **(extra or {}),
        "study_uid": study_uid,
        "patient_key": key,
        "vendor": ven.key,
        "manufacturer": ven.manufacturer,
        "cohort": cfg.cohort,
        "region": cfg.region,
        "age": info.age,
        "sex": patient.sex,
        "labels": labels_,
        "degeneration": {k: round(v, 3) for k, v in patient.degen.items()},
        "findings": findings_json,
        "series": [
            {
                "key": s.key,
                "series_uid": s.uid,
                "folder": s.folder,
                "description": s.description,
                "plane": s.plane,
                "sequence_class": s.sequence_class,
                "n_slices": len(s.stack.slices),
                "rows": s.stack.slices[0].rows,
                "cols": s.stack.slices[0].cols,
                "slice_levels": [g.level for g in s.stack.slices] if s.plane == "axial" else None,
                **s.meta,
            }
            for s in series
        ],
    }
    if cfg.region == "lumbar":
        truth["rsna"] = rsna_grades(patient.findings, levels)
    entry = StudyEntry(
        study_uid=study_uid,
        patient_key=key,
        series=[
            SeriesEntry(
                series_uid=s.uid,
                path=str(root / s.folder),
                description=s.description,
                sequence_class=s.sequence_class,
                plane=s.plane,
            )
            for s in series
        ],
        root=str(root),
        vendor=ven.key,
        cohort=cfg.cohort,
        region=cfg.region,
        report=report,
        labels=labels_,
        ground_truth=str(root / "ground_truth.json"),
    )
    if out_root is not None:
        (out_root / root).mkdir(parents=True, exist_ok=True)
        (out_root / root / "ground_truth.json").write_text(
            json.dumps(truth, indent=1, sort_keys=True), encoding="utf-8"
        )
        (out_root / root / "report.txt").write_text(report, encoding="utf-8")
    return Study(cfg, patient, sp, labels, series, entry, truth, info)
