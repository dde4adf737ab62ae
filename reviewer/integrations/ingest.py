"""Import DICOM files (files, folders, zip archives) into Orthanc.

Each file is checked with pydicom first so that a corrupt or non-DICOM file gets a reason a
person can act on ("not a DICOM file: no DICM preamble", "missing SOPInstanceUID") instead of
Orthanc's generic 400. One bad file never stops the batch. Orthanc answers ``AlreadyStored``
for an instance it has, so re-importing is a no-op.
"""

from __future__ import annotations

import io
import logging
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pydicom
import pyorthanc
from pydicom.errors import InvalidDicomError

logger = logging.getLogger(__name__)

REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR


def dicomdir_files(path: Path) -> list[Path] | None:
    """The files a DICOMDIR (a CD/DVD index) references, or None when ``path`` is no DICOMDIR.
    A DICOMDIR holds no image itself: importing it means importing what it points to."""
    if path.name.upper() != "DICOMDIR":
        try:
            head = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["MediaStorageSOPClassUID"])
        except Exception:
            return None
        if str(getattr(head.file_meta, "MediaStorageSOPClassUID", "")) != MEDIA_STORAGE_DIRECTORY:
            return None
    try:
        from pydicom.fileset import FileSet

        return [Path(instance.path) for instance in FileSet(pydicom.dcmread(path))]
    except Exception:
        return None


@dataclass(frozen=True)
class ImportResult:
    source: str  # file path, or "archive.zip:member"
    status: str  # "stored" | "already_stored" | "rejected"
    reason: str = ""
    orthanc_id: str = ""
    study_uid: str = ""


@dataclass(frozen=True)
class ImportSummary:
    results: list[ImportResult]
    seconds: float

    @property
    def counts(self) -> dict[str, int]:
        out = {"stored": 0, "already_stored": 0, "rejected": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    @property
    def rate(self) -> float:
        return len(self.results) / self.seconds if self.seconds > 0 else 0.0


def iter_sources(paths: Iterable[str | Path]) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """Yield (label, loader) for every file under the given paths; zip members are expanded.
    Loaders read lazily so a 10 000-file folder is not held in memory at once."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
        elif path.exists():
            files = [path]
        else:
            yield str(path), _raiser(FileNotFoundError(f"no such file or folder: {path}"))
            continue
        seen: set[Path] = set()
        expanded: list[Path] = []
        for file in files:
            referenced = dicomdir_files(file)
            expanded += referenced if referenced is not None else [file]
        for file in expanded:
            if file.resolve() in seen:
                continue  # a folder with a DICOMDIR lists its files twice
            seen.add(file.resolve())
            if zipfile.is_zipfile(file):
                yield from _iter_zip(file)
            else:
                yield str(file), file.read_bytes


def _iter_zip(file: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    try:
        with zipfile.ZipFile(file) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
    except zipfile.BadZipFile as exc:
        yield str(file), _raiser(exc)
        return
    for member in members:
        yield f"{file}:{member.filename}", _zip_loader(file, member.filename)


def _zip_loader(file: Path, name: str) -> Callable[[], bytes]:
    def load() -> bytes:
        with zipfile.ZipFile(file) as zf:
            return zf.read(name)

    return load


def _raiser(exc: Exception) -> Callable[[], bytes]:
    def load() -> bytes:
        raise exc

    return load


def check_dicom(data: bytes) -> tuple[str, str]:
    """Return (error reason or "", StudyInstanceUID), so that a file cut short (a broken copy) is
    rejected here with a reason instead of by Orthanc's raw JSON (see ``check_dicom_file``)."""
    reason, head = check_dicom_file(io.BytesIO(data), len(data))
    return (reason, "") if reason else ("", str(head.StudyInstanceUID))  # type: ignore[union-attr]


def check_dicom_file(fp: IO[bytes], size: int) -> tuple[str, pydicom.Dataset | None]:
    """(error reason or "", the header up to the pixel data, None when unreadable) for a Part-10
    file of ``size`` bytes, reading the header and a few bytes per pixel data item only.

    The header is read up to the pixel data first: pydicom, reading a whole file whose
    compressed pixel data is cut, returns an empty dataset (a J2K file cut at 70 % would read as
    "missing SOPClassUID"). Compressed pixel data is then walked item by item in the file's own
    bytes to the sequence delimiter; the length of native pixel data is checked against the image
    pixel module."""
    from ml.dicom.decode import fragments_problem, native_size_problem, pixel_data_problem, transfer_syntax

    fp.seek(0)
    try:
        head = pydicom.dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError as exc:
        return f"not a DICOM file: {exc}", None
    except Exception as exc:  # pydicom raises many types on truncated/garbled input
        return f"unreadable DICOM: {type(exc).__name__}: {exc}", None
    offset = fp.tell()
    syntax = str(transfer_syntax(head))
    if syntax != DEFLATED and (cut := _cut_last_element(head)):
        return cut, head
    fp.seek(offset)
    element = fp.read(12)
    big = syntax == EXPLICIT_VR_BIG_ENDIAN
    at_pixels = element[:4] == (PIXEL_DATA_TAG_BIG if big else PIXEL_DATA_TAG)
    missing = [kw for kw in REQUIRED_UIDS if not getattr(head, kw, None)]
    if missing and not at_pixels and offset >= size:
        return f"missing {', '.join(missing)}: the file ends at byte {size}, inside its header (cut short?)", head
    if missing:
        return f"missing {', '.join(missing)}", head
    if not at_pixels or syntax == DEFLATED:  # no pixel data, or not readable in place: read it all
        fp.seek(0)
        try:
            ds = pydicom.dcmread(fp)
        except Exception as exc:
            return f"unreadable DICOM: {type(exc).__name__}: {exc}", head
        return pixel_data_problem(ds), head
    # the VR as the element has it: some writers use implicit VR under an explicit syntax
    explicit = element[4:6].isalpha() and element[4:6].isupper()
    value_at = offset + (12 if explicit else 8)
    length = int.from_bytes(element[value_at - offset - 4 : value_at - offset], "big" if big else "little")
    if syntax in NATIVE_SYNTAXES:
        available = min(length, max(0, size - value_at))
        if problem := native_size_problem(head, available):
            return problem, head
        if available < length:
            return f"truncated pixel data: {available} bytes of the {length} its element declares", head
        return "", head
    if length != 0xFFFFFFFF:
        return f"malformed compressed pixel data: defined length {length} instead of an item sequence", head
    return fragments_problem(fp, value_at, size, need_delimiter=True), head


PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
PIXEL_DATA_TAG_BIG = b"\x7f\xe0\x00\x10"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
NATIVE_SYNTAXES = frozenset({IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1", EXPLICIT_VR_BIG_ENDIAN, DEFLATED})


def _cut_last_element(head: pydicom.Dataset) -> str:
    """Why the header read so far ends inside an element, or "": pydicom reads a value cut by
    the end of the file as a short value, without complaint. Checked on the raw (not yet
    converted) last element, before anything reads it."""
    if not len(head):
        return ""
    tag = list(head.keys())[-1]
    raw = head.get_item(tag)
    length, value = getattr(raw, "length", None), getattr(raw, "value", None)
    if isinstance(length, int) and length != 0xFFFFFFFF and isinstance(value, bytes) and len(value) < length:
        return f"truncated file: its element {tag} declares {length} bytes, {len(value)} present"
    return ""


def store_one(client: pyorthanc.Orthanc, label: str, load: Callable[[], bytes]) -> ImportResult:
    """Check and upload one file; every failure becomes a rejected result with its reason."""
    try:
        data = load()
    except Exception as exc:
        return ImportResult(label, "rejected", f"cannot read: {exc}")
    reason, study_uid = check_dicom(data)
    if reason:
        return ImportResult(label, "rejected", reason)
    try:
        response = client.post(f"{client.url}/instances", content=data, headers={"Content-Type": "application/dicom"})
    except httpx.HTTPError as exc:
        return ImportResult(label, "rejected", f"Orthanc unreachable: {exc}", study_uid=study_uid)
    if response.status_code != 200:
        detail = response.text[:300].replace("\n", " ")
        return ImportResult(label, "rejected", f"Orthanc refused it (HTTP {response.status_code}): {detail}")
    body = response.json()
    status = "already_stored" if body.get("Status") == "AlreadyStored" else "stored"
    return ImportResult(label, status, orthanc_id=body.get("ID", ""), study_uid=study_uid)


def import_paths(
    paths: Iterable[str | Path],
    *,
    client: pyorthanc.Orthanc,
    workers: int = 4,
    on_result: Callable[[ImportResult], None] | None = None,
) -> ImportSummary:
    """Import everything under ``paths`` with ``workers`` concurrent uploads.

    Concurrency matters: Orthanc ingests in parallel threads, and while one upload waits on
    Orthanc's disk write the next file is being parsed here.
    """
    start = time.perf_counter()
    results: list[ImportResult] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(lambda src: store_one(client, *src), iter_sources(paths)):
            results.append(result)
            if on_result:
                on_result(result)
    return ImportSummary(results, time.perf_counter() - start)
