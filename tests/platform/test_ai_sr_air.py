"""The AI SR as an IHE AI Results document, through a real Orthanc: TID 1500 root, the imaging
procedure reported, a Contributing Equipment item and TID 4019 algorithm identification with a
neutral name and an opaque version (a keyed hash of the pipeline version; a device UID per
version), the analysis time as content date/time, UNVERIFIED; the key slices as a Key Object
Selection document a blinded reader may fetch; both pass dciodvfy and read back with highdicom;
the admin maps the opaque version back to the pipeline version."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from django.test import Client

from reviewer.integrations.air import AI_NAME, pipeline_version_of_key, version_key
from reviewer.integrations.sr import load_sr, write_ai_sr
from tests.dicom_factory import write_study
from tests.factories import DraftFactory, FindingFactory, UserFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db]

VERSION = "spinefm-large@4.2+agents@9"


def dciodvfy(ds: pydicom.Dataset, path: Path) -> subprocess.CompletedProcess:
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)


def items(ds: pydicom.Dataset):  # type: ignore[no-untyped-def]
    """Every content item of an SR tree, depth first."""
    for item in ds.get("ContentSequence", None) or []:
        yield item
        yield from items(item)


def named(ds: pydicom.Dataset, code: str) -> list[str]:
    """Text values of the items whose concept name code is ``code``."""
    return [
        i.TextValue
        for i in items(ds)
        if "ConceptNameCodeSequence" in i and i.ConceptNameCodeSequence[0].CodeValue == code
    ]


def ours(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    """The AI's Contributing Equipment items (highdicom adds one of its own)."""
    return [e for e in ds.ContributingEquipmentSequence if e.Manufacturer == "SpineReview"]


@pytest.fixture
def drafted(tmp_path, empty_orthanc, orthanc_settings):  # type: ignore[no-untyped-def]
    study_uid, files = write_study(tmp_path / "dcm")
    for f in files:
        assert empty_orthanc.post("/instances", content=Path(f).read_bytes()).status_code == 200
    a, b = (pydicom.dcmread(f, stop_before_pixels=True) for f in (files[1], files[-1]))
    draft = DraftFactory(study__study_uid=study_uid, study__blinded=True, job__pipeline_version=VERSION)
    FindingFactory(
        draft=draft,
        boxes=[{"series_uid": a.SeriesInstanceUID, "sop_uid": a.SOPInstanceUID, "xyxy": [4, 4, 20, 20]}],
        key_slices=[{"series_uid": s.SeriesInstanceUID, "sop_uid": s.SOPInstanceUID, "index": 1} for s in (a, b)],
    )
    row = write_ai_sr(draft=draft)
    return {"draft": draft, "row": row, "study_uid": study_uid, "key_sops": {a.SOPInstanceUID, b.SOPInstanceUID}}


def test_the_ai_sr_is_an_air_result_that_names_no_model(tmp_path, drafted, empty_orthanc):  # type: ignore[no-untyped-def]
    draft, row = drafted["draft"], drafted["row"]
    ds = load_sr(drafted["study_uid"], row.series_instance_uid, row.sop_instance_uid)
    result = dciodvfy(ds, tmp_path / "sr.dcm")
    assert result.returncode == 0, result.stderr

    key = version_key(VERSION)
    assert ds.ConceptNameCodeSequence[0].CodeValue == "126000"  # TID 1500 Imaging Measurement Report
    procedure = [i for i in items(ds) if i.ConceptNameCodeSequence[0].CodeValue == "121058"]
    assert [p.ConceptCodeSequence[0].CodeValue for p in procedure] == ["363679005"]  # Imaging procedure
    (equipment,) = ours(ds)
    assert equipment.Manufacturer == "SpineReview"
    assert equipment.ManufacturerModelName == AI_NAME
    assert equipment.SoftwareVersions == key
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"  # Processing Equipment
    device_uid = equipment.DeviceUID
    assert [i.UID for i in items(ds) if i.ConceptNameCodeSequence[0].CodeValue == "121012"] == [device_uid]
    assert named(ds, "121013") == [AI_NAME]  # Device Observer Name
    groups = ds.ContentSequence[-1].ContentSequence  # Imaging Measurements: box group + 1 key-slice group
    assert len(groups) == 2
    for group in groups:
        assert named(group, "111001") == [AI_NAME]  # Algorithm Name
        assert named(group, "111003") == [key]  # Algorithm Version
    created = draft.created_at
    assert (ds.ContentDate, ds.ContentTime) == (created.strftime("%Y%m%d"), created.strftime("%H%M%S"))
    assert ds.VerificationFlag == "UNVERIFIED"
    assert ds.CompletionFlag == "COMPLETE"
    assert "VerifyingObserverSequence" not in ds
    served = str(ds.to_json_dict())
    for token in ("spinefm", "4.2", "agents@9", VERSION):
        assert token not in served, token

    report = hd.sr.ComprehensiveSR.from_dataset(ds).content
    parsed = hd.sr.MeasurementReport.from_sequence(report)
    (observer,) = [
        o for o in parsed.get_observer_contexts() if o.observer_type == hd.sr.CodedConcept("121007", "DCM", "Device")
    ]
    assert observer.observer_identifying_attributes.uid == device_uid
    assert len(parsed.get_image_measurement_groups()) == 2

    assert pipeline_version_of_key(key) == VERSION  # the admin's way back
    assert pipeline_version_of_key(version_key("another@1")) is None


def test_a_new_model_version_is_a_new_device(tmp_path, drafted, empty_orthanc):  # type: ignore[no-untyped-def]
    first = load_sr(drafted["study_uid"], drafted["row"].series_instance_uid, drafted["row"].sop_instance_uid)
    header = pydicom.dcmread(next((tmp_path / "dcm").rglob("*.dcm")), stop_before_pixels=True)
    other = DraftFactory(
        study=drafted["draft"].study, job__study=drafted["draft"].study, job__pipeline_version="next@1"
    )
    FindingFactory(
        draft=other,
        boxes=[{"series_uid": header.SeriesInstanceUID, "sop_uid": header.SOPInstanceUID, "xyxy": [1, 1, 9, 9]}],
    )
    row = write_ai_sr(draft=other)
    second = load_sr(drafted["study_uid"], row.series_instance_uid, row.sop_instance_uid)
    (a,), (b,) = ours(first), ours(second)
    assert a.DeviceUID != b.DeviceUID
    assert a.SoftwareVersions != b.SoftwareVersions
    assert b.SoftwareVersions == version_key("next@1")
    assert a.ManufacturerModelName == b.ManufacturerModelName == AI_NAME


def test_the_key_slices_are_a_key_object_selection_a_blinded_reader_may_see(tmp_path, drafted, empty_orthanc):  # type: ignore[no-untyped-def]
    study_uid = drafted["study_uid"]
    found = empty_orthanc.post(
        "/tools/find",
        json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid, "Modality": "KO"}, "Expand": True},
    ).json()
    assert len(found) == 1
    tags = found[0]["MainDicomTags"]
    ko = pydicom.dcmread(io.BytesIO(empty_orthanc.get(f"/instances/{found[0]['ID']}/file").content))
    result = dciodvfy(ko, tmp_path / "ko.dcm")
    assert result.returncode == 0, result.stderr
    assert ko.SOPClassUID == pydicom.uid.KeyObjectSelectionDocumentStorage
    assert ko.ConceptNameCodeSequence[0].CodeValue == "113000"  # Of Interest
    created = drafted["draft"].created_at
    assert (ko.ContentDate, ko.ContentTime) == (created.strftime("%Y%m%d"), created.strftime("%H%M%S"))
    assert [e.SoftwareVersions for e in ours(ko)] == [version_key(VERSION)]
    doc = hd.ko.KeyObjectSelectionDocument.from_dataset(ko)
    references = doc.content.get_references()
    assert {r.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for r in references} == drafted["key_sops"]
    assert VERSION not in str(ko.to_json_dict())

    reader = Client()
    reader.force_login(UserFactory(role="radiologist"))
    series = reader.get(f"/dicom-web/studies/{study_uid}/series", HTTP_ACCEPT="application/dicom+json")
    assert series.status_code == 200
    body = b"".join(series.streaming_content) if series.streaming else series.content
    modalities = {s["00080060"]["Value"][0] for s in json.loads(body)}
    assert {"KO", "SR"} <= modalities
    assert tags["SOPInstanceUID"] == ko.SOPInstanceUID
