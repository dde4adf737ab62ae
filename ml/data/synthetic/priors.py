"""An earlier study of the same patient, years before the current one ("prior study").

Radiologists read a spine MRI against the patient's previous one ("unchanged since 2019"), so
the generator can give a patient a second, older study. The prior is the same person (the same
patient draw and the same anatomy stream, ``study.draw_anatomy`` at the current study's
attempt), scanned 2 to 5 years earlier, in one of two courses:

- ``unchanged``: the prior shows exactly the current findings (the same set, the same grades);
- ``progressed``: the prior is a milder version of the current: every definite finding is one
  grade milder (a mild one is not there yet), the acute and new-onset ones (acute fracture and
  its oedema, stress oedema, suspicious osseous lesions) are absent, uncertain (-1) ones are
  absent, and the anatomy changes behind them (canal, foramina, recesses, disc height, slip,
  wedging, bulge, desiccation) are scaled back to match. A patient with nothing to progress is
  ``unchanged``.

Whether a patient has a prior, its course and the time between the studies come from a stream of
their own (``SeedSequence([seed, index, PRIOR_STREAM])``), so asking for priors changes no
byte of the studies that were made without them, and the same seed gives the same pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np

from ml.data.synthetic.anatomy import AnatomyMods
from ml.data.synthetic.findings import SEVERITIES, Finding, Patient

PRIOR_KINDS = ("unchanged", "progressed")
PRIOR_STREAM = 20_190_305  # the stream of the prior decisions (any constant other streams never use)
PRIOR_SUFFIX = "-P1"  # folder of the prior beside the current one: studies/<key>-P1/
# findings a prior years earlier does not show yet (acute or of recent onset)
_NEW_ONSET = {"acute_fracture", "osseous_lesion"}
_STEP = 0.6  # one grade milder: the narrowing/slip/wedge/fat excess behind a finding scaled by this


@dataclass(frozen=True)
class PriorPlan:
    """The prior study of one patient: its course and how long before the current it was made."""

    kind: str  # unchanged | progressed
    days_before: int

    def date_before(self, current: date) -> date:
        return current - timedelta(days=self.days_before)


def prior_plan(seed: int, index: int, fraction: float) -> PriorPlan | None:
    """Whether study ``index`` of dataset ``seed`` gets a prior (probability ``fraction``) and which."""
    if fraction <= 0:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, PRIOR_STREAM]))
    if rng.random() >= fraction:
        return None
    kind = PRIOR_KINDS[int(rng.integers(len(PRIOR_KINDS)))]
    return PriorPlan(kind=kind, days_before=int(rng.integers(2 * 365, 5 * 365 + 1)))


def prior_streams(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(report, noise) streams of the prior: its own scan noise and report wording."""
    ss = np.random.SeedSequence([seed, index, PRIOR_STREAM, 1])
    rep, noise = (np.random.default_rng(s) for s in ss.spawn(2))
    return rep, noise


def _milder(f: Finding) -> Finding | None:
    """One grade milder, or None when the finding is not there yet."""
    if f.label == 0:  # hard negatives (Modic 2, focal fat, ...) are long-standing
        return replace(f, mask=None, detail=dict(f.detail))
    if f.label == -1 or f.condition in _NEW_ONSET or f.detail.get("acute") or "cause" in f.detail:
        return None
    if f.condition in ("hemangioma", "perineural_cyst", "pars_defect", "intradural_lesion"):
        return replace(f, mask=None, detail=dict(f.detail))  # these do not grade with degeneration
    if f.condition == "spondylolisthesis":
        mm = round(float(f.detail.get("mm", 4.0)) * _STEP, 1)
        return replace(f, mask=None, severity="mild", detail={**f.detail, "mm": mm, "grade": 1})
    rank = SEVERITIES.index(f.severity)
    if rank == 0:
        return None
    return replace(f, mask=None, severity=SEVERITIES[rank - 1], detail=dict(f.detail))


def _scaled_mods(mods: AnatomyMods, kept: list[Finding], degen_scale: float) -> AnatomyMods:
    """The anatomy changes of the milder findings: a dropped finding's change goes, a milder one's shrinks."""
    have = {(f.condition, f.level, f.side) for f in kept}

    fat_levels = {lv for f in kept if f.condition == "epidural_lipomatosis" for lv in f.detail.get("levels", [f.level])}

    def keep(cond: str, level: str, side: str | None = None) -> bool:
        return (cond, level, side) in have

    out = AnatomyMods(
        disc_degen={k: v * degen_scale for k, v in mods.disc_degen.items()},
        bulge={k: 1.0 + (v - 1.0) * _STEP for k, v in mods.bulge.items() if v * degen_scale > 1.0},
        slip={k: v * _STEP for k, v in mods.slip.items() if keep("spondylolisthesis", k)},
        wedge={k: v * _STEP for k, v in mods.wedge.items() if keep("compression_deformity", k)},
        canal={k: v * _STEP for k, v in mods.canal.items() if keep("canal_stenosis", k, "central")},
        foramen={k: v * _STEP for k, v in mods.foramen.items() if keep("foraminal_narrowing", *k)},
        recess={k: v * _STEP for k, v in mods.recess.items() if keep("subarticular_stenosis", *k)},
        lipomatosis={k: v * _STEP for k, v in mods.lipomatosis.items() if k in fat_levels},
    )
    for level, factor in mods.disc_height.items():
        if keep("disc_height_loss", level):
            out.disc_height[level] = 1.0 - (1.0 - factor) * _STEP
    return out


def prior_patient(current: Patient, kind: str, age: int) -> Patient:
    """The patient at the prior study (age ``age``), from the patient at the current one.

    Returns a new Patient (fresh findings without masks); ``current`` is left as it is.
    """
    if kind not in PRIOR_KINDS:
        raise ValueError(f"unknown prior course {kind!r}; known: {', '.join(PRIOR_KINDS)}")
    if kind == "unchanged":
        same = [replace(f, mask=None, detail=dict(f.detail)) for f in current.findings]
        return Patient(age, current.sex, dict(current.degen), same, replace(current.mods))
    kept = [m for m in (_milder(f) for f in current.findings) if m is not None]
    scale = _STEP + (1 - _STEP) / 2
    degen = {k: v * scale for k, v in current.degen.items()}
    return Patient(age, current.sex, degen, kept, _scaled_mods(current.mods, kept, scale))


def has_progression(current: list[Finding]) -> bool:
    """Whether a progressed prior would differ from the current study (something to grade down)."""
    return any(f.label != 0 for f in current)


def progression(prior: list[Finding], current: list[Finding]) -> list[dict[str, str]]:
    """What changed from the prior to the current: new findings and findings that got worse."""
    before = {(f.condition, f.level, f.side): f for f in prior if f.label != 0}
    out = []
    for f in current:
        if f.label == 0:
            continue
        p = before.get((f.condition, f.level, f.side))
        if p is None:
            out.append({"condition": f.condition, "level": f.level, "change": "new"})
        elif SEVERITIES.index(p.severity) < SEVERITIES.index(f.severity) or p.detail.get("mm", 0) < f.detail.get(
            "mm", 0
        ):
            out.append({"condition": f.condition, "level": f.level, "change": "worse"})
    return out


@dataclass(frozen=True)
class PriorMention:
    """The patient's earlier study as the report compares with it."""

    date: date
    course: str  # unchanged | progressed
    changes: list[dict[str, str]]  # priors.progression: {"condition", "level", "change": new | worse}


def compared_line(pick: Callable[..., str], region: str, prior: PriorMention) -> str:
    """The report's COMPARISON sentence: the prior named by its date."""
    when = prior.date.isoformat()
    return pick(
        f"MRI of the {region} spine of {when}.",
        f"Prior MRI {region.upper()} SPINE of {when}.",
        f"{region.capitalize()} spine MRI dated {when}.",
    )


def change_line(pick: Callable[..., str], prior: PriorMention) -> str:
    """The IMPRESSION's closing sentence: stable, or where it progressed since the prior."""
    when = prior.date.isoformat()
    if not prior.changes:
        return pick(f"No significant change since {when}.", f"Stable appearance compared to {when}.")
    worse = sorted({c["level"] for c in prior.changes})
    return pick(
        f"Interval progression at {', '.join(worse)} since {when}.",
        f"Compared with {when}, findings have progressed at {', '.join(worse)}.",
    )
