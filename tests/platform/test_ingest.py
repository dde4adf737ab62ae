"""import_dicom against a real Orthanc: folders, zips, corrupt files, re-import."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.dicom_factory import write_study

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def test_import_of_a_folder_stores_every_instance_and_reimport_is_a_no_op(tmp_path, empty_orthanc, orthanc_settings):
    _study_uid, files = write_study(tmp_path / "study")
    out = io.StringIO()
    call_command("import_dicom", str(tmp_path / "study"), "--quiet", stdout=out)
    assert f"{len(files)} stored, 0 already stored, 0 rejected" in out.getvalue()
    assert len(empty_orthanc.get("/instances").json()) == len(files)

    out = io.StringIO()
    call_command("import_dicom", str(tmp_path / "study"), "--quiet", stdout=out)
    assert f"0 stored, {len(files)} already stored, 0 rejected" in out.getvalue()
    assert len(empty_orthanc.get("/instances").json()) == len(files)


def test_corrupt_and_non_dicom_files_are_reported_and_do_not_stop_the_batch(
    tmp_path, empty_orthanc, orthanc_settings, capsys
):  # type: ignore[no-untyped-def]
    _, files = write_study(tmp_path / "study")
    (tmp_path / "study" / "notes.txt").write_text("not an image")
    truncated = tmp_path / "study" / "truncated.dcm"
    truncated.write_bytes(files[0].read_bytes()[:300])
    out = io.StringIO()
    call_command("import_dicom", str(tmp_path / "study"), "--quiet", stdout=out)
    assert f"{len(files)} stored, 0 already stored, 2 rejected" in out.getvalue()
    err = capsys.readouterr().err
    assert "REJECTED" in err
    assert "notes.txt" in err
    assert "truncated.dcm" in err


def test_zip_archives_are_expanded(tmp_path, empty_orthanc, orthanc_settings):  # type: ignore[no-untyped-def]
    _, files = write_study(tmp_path / "study")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, arcname=f"DICOM/{f.name}")
        zf.writestr("DICOMDIR-readme.txt", "hello")
    out = io.StringIO()
    call_command("import_dicom", str(archive), "--quiet", stdout=out)
    assert f"{len(files)} stored, 0 already stored, 1 rejected" in out.getvalue()


def test_import_with_orthanc_down_is_a_clear_error(tmp_path, settings):  # type: ignore[no-untyped-def]
    from reviewer.integrations.orthanc import orthanc

    settings.ORTHANC_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    orthanc.cache_clear()
    try:
        with pytest.raises(CommandError, match="unreachable"):
            call_command("import_dicom", str(tmp_path), "--quiet")
    finally:
        orthanc.cache_clear()


def test_missing_path_is_reported(tmp_path: Path, empty_orthanc, orthanc_settings, capsys):  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="nothing could be imported"):
        call_command("import_dicom", str(tmp_path / "nope"), "--quiet")
    assert "no such file or folder" in capsys.readouterr().err
