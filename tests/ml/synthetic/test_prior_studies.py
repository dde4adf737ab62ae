"""A synthetic patient with a prior study: one person (PatientID, name, birth date, sex), two
studies years apart with their own UIDs, the prior's findings the current ones (unchanged) or a
milder subset of them (progressed), the current report naming the prior's date, all from the seed;
and asking for priors changes no byte of the studies made without them."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import pydicom
import pytest

from ml.data.manifest import read_manifest
from ml.data.synthetic.anatomy import AnatomyMods
from ml.data.synthetic.cli import main as synth_main
from ml.data.synthetic.findings import SEVERITIES, Finding, Patient
from ml.data.synthetic.priors import PRIOR_SUFFIX, prior_patient, prior_plan
from ml.data.synthetic.study import StudyConfig, generate_study

SEED = 5


def _index_with(kind: str) -> int:
    return next(i for i in range(50) if (p := prior_plan(SEED, i, 1.0)) is not None and p.kind == kind)


def _header(folder: Path) -> pydicom.Dataset:
    return pydicom.dcmread(sorted(folder.rglob("*.dcm"))[0], stop_before_pixels=True)


def _key(f: dict) -> tuple:
    return f["condition"], f["level"], f["side"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("pairs")
    made = {}
    for kind in ("unchanged", "progressed"):
        cfg = StudyConfig(seed=SEED, index=_index_with(kind), fast=True, prevalence="enriched", vendor="Siemens")
        made[kind] = generate_study(cfg, out, prior=prior_plan(SEED, cfg.index, 1.0))
    return {"out": out, **made}


@pytest.mark.parametrize("kind", ["unchanged", "progressed"])
def test_the_pair_is_one_patient_with_two_studies_years_apart(pairs, kind):  # type: ignore[no-untyped-def]
    current = pairs[kind]
    prior = current.prior
    assert prior is not None
    now = _header(pairs["out"] / current.entry.root)
    then = _header(pairs["out"] / prior.entry.root)
    assert prior.entry.root == current.entry.root + PRIOR_SUFFIX
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"):
        assert now.get(keyword) == then.get(keyword), keyword
    assert now.StudyInstanceUID != then.StudyInstanceUID
    assert now.FrameOfReferenceUID != then.FrameOfReferenceUID
    assert now.AccessionNumber != then.AccessionNumber
    assert {s.series_uid for s in current.entry.series}.isdisjoint({s.series_uid for s in prior.entry.series})
    d_now, d_then = (date.fromisoformat(f"{d[:4]}-{d[4:6]}-{d[6:]}") for d in (now.StudyDate, then.StudyDate))
    assert 2 * 365 <= (d_now - d_then).days <= 5 * 365
    birth_year = int(now.PatientBirthDate[:4])
    assert int(str(then.PatientAge)[:-1]) == d_then.year - birth_year
    assert int(str(now.PatientAge)[:-1]) == d_now.year - birth_year
    assert current.truth["prior"] == {"kind": kind, "date": then.StudyDate, "study_uid": then.StudyInstanceUID}
    assert prior.truth["later"]["study_uid"] == now.StudyInstanceUID
    assert prior.entry.patient_key == current.entry.patient_key  # patient-level splits keep them together


def test_an_unchanged_prior_shows_the_current_findings(pairs):  # type: ignore[no-untyped-def]
    now, then = pairs["unchanged"].truth["findings"], pairs["unchanged"].prior.truth["findings"]
    assert [(_key(f), f["severity"], f["label"]) for f in then] == [(_key(f), f["severity"], f["label"]) for f in now]
    assert any(f["label"] == 1 for f in now)


def test_a_progressed_prior_is_a_milder_subset_of_the_current(pairs):  # type: ignore[no-untyped-def]
    now = {_key(f): f for f in pairs["progressed"].truth["findings"]}
    then = pairs["progressed"].prior.truth["findings"]
    assert then, "a progressed prior of an enriched patient still shows something"
    for f in then:
        assert _key(f) in now, f
        later = now[_key(f)]
        assert SEVERITIES.index(f["severity"]) <= SEVERITIES.index(later["severity"]), (f, later)
    milder = [f for f in then if f["label"] == 1 and f["severity"] != now[_key(f)]["severity"]]
    missing = [k for k, f in now.items() if f["label"] != 0 and k not in {_key(g) for g in then}]
    assert milder or missing, "progressed means something is worse or new in the current study"
    assert pairs["progressed"].prior.truth["age"] < pairs["progressed"].truth["age"]


@pytest.mark.parametrize("kind", ["unchanged", "progressed"])
def test_the_current_report_compares_with_the_prior_by_date(pairs, kind):  # type: ignore[no-untyped-def]
    d = pairs[kind].truth["prior"]["date"]
    iso = f"{d[:4]}-{d[4:6]}-{d[6:]}"
    comparison = next(line for line in pairs[kind].entry.report.splitlines() if line.startswith("COMPARISON:"))
    assert iso in comparison
    impression = pairs[kind].entry.report.split("IMPRESSION:")[1]
    assert iso in impression
    assert ("progress" in impression) == (kind == "progressed")
    assert "COMPARISON: None." in pairs[kind].prior.entry.report


def test_progressed_grades_down_and_takes_back_the_anatomy_behind_it() -> None:
    mods = AnatomyMods(canal={"L4-5": 0.72}, foramen={("L3-4", "left"): 0.5}, disc_height={"L4-5": 0.45})
    findings = [
        Finding("canal_stenosis", "L4-5", "central", "severe", 1),
        Finding("foraminal_narrowing", "L3-4", "left", "mild", 1),
        Finding("disc_height_loss", "L4-5", None, "severe", 1),
        Finding("acute_fracture", "L1", None, "moderate", 1),
        Finding("endplate_inflammation", "L2-3", None, "mild", 0, {"modic": 2}),
    ]
    current = Patient(60, "F", {"L4-5": 0.9}, findings, mods)
    before = prior_patient(current, "progressed", 56)
    assert [(f.condition, f.severity) for f in before.findings] == [
        ("canal_stenosis", "moderate"),
        ("disc_height_loss", "moderate"),
        ("endplate_inflammation", "mild"),
    ]
    assert before.age == 56
    assert before.sex == "F"
    assert 0 < before.mods.canal["L4-5"] < 0.72
    assert before.mods.foramen == {}
    assert 0.45 < before.mods.disc_height["L4-5"] < 1.0
    assert before.degen["L4-5"] < 0.9
    assert current.findings[0].severity == "severe"  # the current patient is left as it was
    assert current.mods.canal["L4-5"] == 0.72


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_the_cli_is_deterministic_and_priors_leave_the_other_studies_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = ["--studies", "3", "--seed", str(SEED), "--fast", "--series", "sag_t2,ax_t2"]
    for name, extra in (("a", ["--with-priors", "0.5"]), ("b", ["--with-priors", "0.5"]), ("none", [])):
        assert synth_main([*args, "--out", str(tmp_path / name), *extra]) == 0
    entries = list(read_manifest(tmp_path / "a" / "manifest.jsonl"))
    priors = [e for e in entries if e.root.endswith(PRIOR_SUFFIX)]
    expected = [i for i in range(3) if prior_plan(SEED, i, 0.5) is not None]
    assert len(priors) == len(expected) >= 1
    assert len(entries) == 3 + len(priors)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    for i in range(3):
        key = f"studies/SYN-{i + 1:04d}"
        a, none = tmp_path / "a" / key, tmp_path / "none" / key
        if i in expected:  # same images; the report and truth gain the comparison
            for dcm in sorted(none.rglob("*.dcm")):
                assert (a / dcm.relative_to(none)).read_bytes() == dcm.read_bytes()
            assert json.loads((a / "ground_truth.json").read_text())["prior"]["study_uid"]
        else:
            assert _digest(a) == _digest(none)
