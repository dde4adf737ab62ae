"""STOW-RS through the proxy answers per instance (PS3.18): a request with good and bad parts
stores the good ones against a real Orthanc and names the bad ones in FailedSOPSequence."""

from __future__ import annotations

import json

import pydicom
import pytest
from django.test import Client

from reviewer.integrations.stow import MultipartError, iter_parts
from tests.dicom_factory import SeriesSpec, write_study

BOUNDARY = "spinereviewmixed"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def body(*parts: bytes, part_type: str = "application/dicom") -> bytes:
    return (
        b"".join(f"--{BOUNDARY}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n" for part in parts)
        + f"--{BOUNDARY}--\r\n".encode()
    )


def chunked(data: bytes, size: int):  # type: ignore[no-untyped-def]
    return (data[i : i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize("size", [1, 7, 19, 65536])
def test_parts_are_split_the_same_whatever_the_chunk_size(size: int) -> None:
    parts = [b"\r\n--spinereviewmixe", b"x" * 1000, b"", b"--" + BOUNDARY.encode() + b"x"]
    data = b"preamble\r\n" + body(*parts)
    got = []
    for part in iter_parts(chunked(data, size), BOUNDARY.encode()):
        part.file.seek(0)
        got.append((part.headers["content-type"], part.file.read(), part.size))
    assert got == [("application/dicom", p, len(p)) for p in parts]


def test_a_body_cut_inside_a_part_is_an_error() -> None:
    with pytest.raises(MultipartError, match="ends inside a part"):
        list(iter_parts(iter([body(b"a" * 100)[:-30]]), BOUNDARY.encode()))


def _stow(role_user, data: bytes) -> tuple[int, dict, str]:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(role_user("radiologist"))
    response = client.post("/dicom-web/studies", data=data, content_type=CONTENT_TYPE)
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, json.loads(raw), response.get("Warning", "")


def _instances(orthanc) -> set[str]:  # type: ignore[no-untyped-def]
    ids = orthanc.get("/instances").json()
    return {orthanc.get(f"/instances/{i}").json()["MainDicomTags"]["SOPInstanceUID"] for i in ids}


@pytest.mark.services
@pytest.mark.django_db
def test_one_good_and_one_corrupt_part_answer_202_with_the_good_one_stored_and_the_bad_one_named(
    tmp_path, empty_orthanc, orthanc_settings, role_user
):  # type: ignore[no-untyped-def]
    _, files = write_study(tmp_path, protocol=(SeriesSpec("SAG T2 FSE", tr=3500, te=100, n=2),))
    good, bad = files[0].read_bytes(), files[1].read_bytes()
    good_uid = str(pydicom.dcmread(files[0]).SOPInstanceUID)
    bad_uid = str(pydicom.dcmread(files[1]).SOPInstanceUID)

    status, answer, warning = _stow(role_user, body(good, bad[: int(len(bad) * 0.7)]))

    assert status == 202, answer
    assert _instances(empty_orthanc) == {good_uid}
    (stored,) = answer["00081199"]["Value"]
    assert stored["00081155"]["Value"] == [good_uid]
    assert stored["00081190"]["Value"][0].endswith(f"/instances/{good_uid}")
    (failed,) = answer["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [bad_uid]
    assert failed["00081150"]["Value"] == ["1.2.840.10008.5.1.4.1.1.4"]
    assert failed["00081197"] == {"vr": "US", "Value": [0xC000]}
    assert failed["00000902"]["Value"][0].startswith("truncated pixel data: ")
    assert f"{bad_uid}: truncated pixel data: " in warning


@pytest.mark.services
@pytest.mark.django_db
def test_no_part_stored_is_409_naming_each_and_all_good_is_200(tmp_path, empty_orthanc, orthanc_settings, role_user):  # type: ignore[no-untyped-def]
    _, files = write_study(tmp_path, protocol=(SeriesSpec("SAG T2 FSE", tr=3500, te=100, n=2),))

    status, answer, warning = _stow(role_user, body(b"not a DICOM file at all", files[0].read_bytes()[:300]))
    assert status == 409, answer
    assert _instances(empty_orthanc) == set()
    assert "Value" not in answer["00081199"]
    first, second = answer["00081198"]["Value"]
    assert first["00081197"]["Value"] == [0xC000]
    assert "Value" not in first["00081155"]
    assert first["00000902"]["Value"][0].startswith("not a DICOM file")
    assert second["00081155"]["Value"] == [str(pydicom.dcmread(files[0]).SOPInstanceUID)]  # from the file meta
    assert "the file ends at byte 300, inside its header (cut short?)" in warning
    assert "part 1: not a DICOM file" in warning

    status, answer, _ = _stow(role_user, body(*(f.read_bytes() for f in files)))
    assert status == 200, answer
    assert len(answer["00081199"]["Value"]) == 2
    assert "Value" not in answer["00081198"]
    assert len(_instances(empty_orthanc)) == 2
