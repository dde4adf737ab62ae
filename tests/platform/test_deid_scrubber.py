"""The de-identification functions on their own (no database, no services): the free-text
scrubber on a corpus of report snippets with PHI, on the synthetic report writer's clinical
language, and the PS3.15 header profile on a real DICOM dataset."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import keyword_dict
from pydicom.uid import MRImageStorage

from reviewer import deid, deid_profile
from tests.dicom_factory import LUMBAR_PROTOCOL, make_instance

CORPUS = json.loads((Path(__file__).resolve().parent.parent / "data" / "deid_corpus.json").read_text())
SECRET = b"unit-test-secret"


@pytest.fixture(scope="module")
def scrub() -> deid.Scrubber:
    return deid.make_scrubber(CORPUS["known_names"], usernames=CORPUS["usernames"])


def test_the_corpus_is_big_enough_and_every_case_has_phi() -> None:
    assert len(CORPUS["cases"]) >= 20
    assert all(case["phi"] and case["keep"] for case in CORPUS["cases"])


@pytest.mark.parametrize("i", range(len(CORPUS["cases"])))
def test_every_phi_item_is_removed_and_clinical_content_kept(i: int, scrub: deid.Scrubber) -> None:
    case = CORPUS["cases"][i]
    out = scrub(case["text"])
    leaked = [p for p in case["phi"] if p.lower() in out.lower()]
    lost = [k for k in case["keep"] if k not in out]
    assert not leaked, (leaked, out)
    assert not lost, (lost, out)


def test_clinical_report_language_is_left_alone_except_ages_over_89() -> None:
    """400 reports of the synthetic report writer (levels, sizes, sequences, grades; no PHI but
    the age): the scrubber changes nothing but ages over 89."""
    from ml.data.synthetic.report_corpus import iter_report_samples

    scrub = deid.make_scrubber(["DOE^JOHN", "MAY^ELEANOR"], usernames=["jharper"])
    changed = 0
    for sample in iter_report_samples(400, seed=1, regions=("lumbar", "cervical", "thoracic")):
        expected = re.sub(r"\b(9\d|1[0-4]\d)(?=-year-old| [MF]\.)", "90+", sample.report)
        assert scrub(sample.report) == expected
        changed += expected != sample.report
    assert changed > 0  # two of these patients are over 89: the age rule was exercised


def test_known_names_are_removed_only_where_written_as_names() -> None:
    scrub = deid.make_scrubber(["MAY^GRACE"], usernames=["long"])
    assert scrub("Mrs May was seen. Findings may represent a small cyst.") == (
        "Mrs [NAME] was seen. Findings may represent a small cyst."
    )
    assert scrub("GRACE MAY, L4-5 disc") == "[NAME] [NAME], L4-5 disc"
    assert scrub("signed by long; a long segment of T2 signal") == "signed by [NAME]; a [NAME] segment of T2 signal"


@pytest.mark.parametrize(
    "text",
    ["L4-5", "L5-S1", "T12-L1", "C5-C6", "8 mm", "12 x 9 x 7 mm", "3.2 cm", "1.5T", "T2 STIR", "S1 nerve root",
     "Grade 1", "Modic type 2", "50%", "at 14:32", "in 2019", "T1-weighted", "C2-3", "1/3 of the canal"],
)  # fmt: skip
def test_clinical_tokens_survive(text: str) -> None:
    assert deid.scrub_text(f"Finding: {text}.") == f"Finding: {text}."


def test_pseudonyms_are_keyed_stable_and_namespaced() -> None:
    a = deid.pseudonym("study", "1.2.3", secret=SECRET)
    assert a == deid.pseudonym("study", "1.2.3", secret=SECRET)  # stable across calls and runs
    assert re.fullmatch(r"[0-9a-f]{20}", a)
    assert a != deid.pseudonym("study", "1.2.3", secret=b"another site")
    assert a != deid.pseudonym("patient", "1.2.3", secret=SECRET)
    uid = deid.replacement_uid("1.2.3", secret=SECRET)
    assert uid == deid.replacement_uid("1.2.3", secret=SECRET)
    assert re.fullmatch(r"2\.25\.[1-9]\d*", uid)
    assert len(uid) <= 64
    assert uid != deid.replacement_uid("1.2.3", secret=b"another site")


def test_the_profile_names_real_attributes_with_known_actions() -> None:
    assert set(deid_profile.BASIC_PROFILE) <= set(keyword_dict)
    assert set(deid_profile.BASIC_PROFILE.values()) <= {"X", "Z", "D", "U", "C"}
    assert deid_profile.profile_action("SOPClassUID", "UI") == "K"
    assert deid_profile.profile_action("ReferencedSOPInstanceUID", "UI") == "U"
    assert deid_profile.profile_action("NamesOfIntendedRecipientsOfResults", "PN") == "Z"  # catch-all by VR
    assert deid_profile.profile_action("DateOfLastCalibration", "DA") == "X"


def _identified_dataset() -> pydicom.Dataset:
    spec = LUMBAR_PROTOCOL[1]
    ds = make_instance(study_uid="1.2.826.0.1.3680043.10.777.1", series_uid="1.2.826.0.1.3680043.10.777.1.2",
                       spec=spec, index=0, series_number=2, patient="MRN-4471902")  # fmt: skip
    ds.PatientName = "DOE^JOHN"
    ds.InstitutionName, ds.OperatorsName = "St Elsewhere Hospital", "KOWALSKI^MARTA"
    ds.ReferringPhysicianName = "HARPER^JULIA"
    ds.NamesOfIntendedRecipientsOfResults = "NKEM^ABARA"  # a PN the table does not list
    ds.DateOfLastCalibration = "20251224"  # a date the table does not list
    ds.StudyDescription = "MRI L-SPINE DOE JOHN 03/12/2024"
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = MRImageStorage, "1.2.826.0.1.3680043.10.777.9.9"
    ds.ReferencedImageSequence = [ref]
    req = pydicom.Dataset()
    req.RequestedProcedureID, req.ReasonForTheRequestedProcedure = "RP-99812", "back pain, Mr Doe"
    ds.RequestAttributesSequence = [req]
    ds.add_new(0x00091010, "LO", "PRIVATE PATIENT NOTE DOE")
    return ds


def test_header_profile_removes_every_identity_and_keeps_pixels() -> None:
    original = _identified_dataset()
    before = {
        "uids": [original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID,
                 original.FrameOfReferenceUID, "1.2.826.0.1.3680043.10.777.9.9"],
        "text": ["DOE", "JOHN", "MRN-4471902", "ACCMRN-4471902", "St Elsewhere", "KOWALSKI", "HARPER", "NKEM",
                 "20260101", "19700101", "20251224", "RP-99812", "PRIVATE PATIENT"],
    }  # fmt: skip
    clean = deid.deidentify_dataset(original, secret=SECRET)
    buf = io.BytesIO()
    clean.save_as(buf, enforce_file_format=True)
    body = buf.getvalue()
    for value in before["uids"] + before["text"]:
        assert value.encode() not in body, value
    back = pydicom.dcmread(io.BytesIO(body))
    assert back.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in back.DeidentificationMethodCodeSequence] == ["113100", "113105"]
    assert back.StudyInstanceUID == deid.replacement_uid(original.StudyInstanceUID, secret=SECRET)
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.ReferencedImageSequence[0].ReferencedSOPInstanceUID == deid.replacement_uid(
        "1.2.826.0.1.3680043.10.777.9.9", secret=SECRET
    )
    assert back.ReferencedImageSequence[0].ReferencedSOPClassUID == MRImageStorage  # class UIDs are kept
    assert back.PatientID == deid.pseudonym("patient", "MRN-4471902", secret=SECRET)
    assert back.StudyDate == ""  # type 2: emptied, still present
    assert back.AccessionNumber == ""
    assert "SeriesDate" not in back
    assert "DateOfLastCalibration" not in back
    assert back.SeriesDescription == "SAG T2 FSE"  # clean descriptors: sequence names survive
    assert back.StudyDescription == "MRI L-SPINE [NAME] [NAME] [DATE]"
    assert back.RepetitionTime == original.RepetitionTime
    assert back.PixelData == original.PixelData
    assert original.PatientName == "DOE^JOHN"  # the input is not changed
