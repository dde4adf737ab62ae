"""STOW-RS answered per instance (DICOM PS3.18 10.5): a request with one good and one bad part
stores the good one and says so.

Why not forward the request whole: Orthanc's DICOMweb plugin (1.7) answers a STOW request with
one unreadable part HTTP 400 with an *empty* FailedSOPSequence, although it stored the good
instances, so the sender cannot tell which instance to send again. The proxy therefore splits the
multipart/related body as it streams in, checks each part with the ingest check (a file cut
short is named as such: ``check_dicom_file``), stores it with a one-part STOW request to Orthanc,
and composes the PS3.18 answer itself:

- 200 every instance stored; 202 some stored, some failed; 409 none stored (PS3.18 10.5.3);
- ``ReferencedSOPSequence`` (0008,1199) items as Orthanc answered them (with RetrieveURL);
- ``FailedSOPSequence`` (0008,1198) items with ReferencedSOPClassUID / ReferencedSOPInstanceUID
  (when the part's header could be read), ``FailureReason`` (0008,1197) and the readable reason
  in ErrorComment (0000,0902) and in an HTTP ``Warning`` header.

Memory stays bounded: a part is spooled to a temporary file beyond ``SPOOL_BYTES`` and sent to
Orthanc in 64 KiB chunks; only one part exists at a time.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import httpx
import pydicom
from django.http import JsonResponse

from reviewer.integrations.ingest import check_dicom_file

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
SPOOL_BYTES = 8 * 1024 * 1024
MAX_PART_HEADERS = 16 * 1024
# FailureReason values (PS3.4 C-STORE status codes, as PS3.18 uses them)
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
DICOM = "application/dicom"


class MultipartError(ValueError):
    """The body is not a readable multipart/related body; the message says where it broke."""


@dataclass
class Part:
    """One body part: its headers (lower-case names) and its bytes, spooled."""

    headers: dict[str, str]
    file: IO[bytes]
    size: int

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", DICOM).split(";")[0].strip().lower()


def iter_parts(chunks: Iterator[bytes], boundary: bytes) -> Iterator[Part]:
    """The parts of a multipart body read from ``chunks``, one at a time (each part's file is
    closed when the next is read). Holds at most one chunk plus the boundary in memory."""
    marker = b"\r\n--" + boundary
    buf = b"\r\n"  # the first delimiter has no CRLF before it
    source = iter(chunks)

    def fill() -> bool:
        nonlocal buf
        chunk = next(source, None)
        if chunk is None:
            return False
        buf += chunk
        return True

    while (start := buf.find(marker)) < 0:
        buf = buf[-(len(marker) - 1) :]
        if not fill():
            raise MultipartError("no part boundary in the body")
    buf = buf[start + len(marker) :]
    while True:
        while len(buf) < 2 and fill():
            pass
        if buf.startswith(b"--"):
            return  # close delimiter
        while (eol := buf.find(b"\r\n")) < 0:
            if not fill():
                raise MultipartError("the body ends after a boundary")
        buf = buf[eol + 2 :]
        while not buf.startswith(b"\r\n") and (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_PART_HEADERS or not fill():
                raise MultipartError("a part's headers do not end")
        if buf.startswith(b"\r\n"):
            raw_headers, buf = b"", buf[2:]
        else:
            raw_headers, buf = buf[:end], buf[end + 4 :]
        headers = {}
        for line in raw_headers.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as body:
            size = 0
            keep = len(marker) - 1
            while (end := buf.find(marker)) < 0:
                if len(buf) > keep:
                    body.write(buf[:-keep])
                    size += len(buf) - keep
                    buf = buf[-keep:]
                if not fill():
                    raise MultipartError("the body ends inside a part (no closing boundary)")
            body.write(buf[:end])
            size += end
            buf = buf[end + len(marker) :]
            yield Part(headers, body, size)


@dataclass
class StowResult:
    """What the per-part stores added up to."""

    stored: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    retrieve_url: str | None = None

    def response(self) -> JsonResponse:
        """The PS3.18 Store Instances Response: 200 / 202 / 409."""
        body: dict[str, dict] = {"00081198": {"vr": "SQ"}, "00081199": {"vr": "SQ"}}
        if self.retrieve_url:
            body["00081190"] = {"vr": "UR", "Value": [self.retrieve_url]}
        if self.failed:
            body["00081198"]["Value"] = self.failed
        if self.stored:
            body["00081199"]["Value"] = self.stored
        status = 200 if not self.failed else 202 if self.stored else 409
        out = JsonResponse(body, status=status, content_type="application/dicom+json")
        if self.warnings:
            out["Warning"] = ", ".join(
                '299 spinereview "{}"'.format(w.encode("ascii", "replace").decode().replace('"', "'")[:300])
                for w in self.warnings[:20]
            )
        return out

    def fail(self, head: pydicom.Dataset | None, code: int, reason: str, label: str) -> None:
        item: dict[str, dict] = {
            "00081197": {"vr": "US", "Value": [code]},
            "00000902": {"vr": "LO", "Value": [reason[:64]]},
        }
        for tag, keyword in (("00081150", "SOPClassUID"), ("00081155", "SOPInstanceUID")):
            value = _header_value(head, keyword)  # the file meta's copy when the header is cut before it
            item[tag] = {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}
        self.failed.append(dict(sorted(item.items())))
        self.warnings.append(f"{_header_value(head, 'SOPInstanceUID') or label}: {reason}")


def _header_value(head: pydicom.Dataset | None, keyword: str) -> str:
    """A UID of a part's header, else its file meta's copy (MediaStorageSOP...), else ""."""
    if head is None:
        return ""
    try:
        value = getattr(head, keyword, "") or ""
        if not value:
            meta = getattr(head, "file_meta", None)
            value = getattr(meta, "MediaStorage" + keyword, "") if meta is not None else ""
        return str(value or "")
    except Exception:  # a garbled element of a part that failed anyway
        return ""


def store_parts(
    parts: Iterator[Part], *, client: httpx.Client, url: httpx.URL, headers: dict[str, str]
) -> StowResult | None:
    """Store each part with its own one-part STOW request; None when Orthanc could not be
    reached before anything was stored (the caller answers 502)."""
    result = StowResult()
    boundary = "spinereview-stow-part"
    opening = f"--{boundary}\r\nContent-Type: {DICOM}\r\n\r\n".encode()
    closing = f"\r\n--{boundary}--\r\n".encode()
    upstream_headers = {
        **headers,
        "content-type": f'multipart/related; type="{DICOM}"; boundary={boundary}',
        "accept": "application/dicom+json",
    }
    for number, part in enumerate(parts, start=1):
        label = f"part {number}"
        if part.media_type != DICOM:
            result.fail(None, CANNOT_UNDERSTAND, f"{part.media_type} part: only {DICOM} is stored", label)
            continue
        reason, head = check_dicom_file(part.file, part.size)
        if reason:
            result.fail(head, CANNOT_UNDERSTAND, reason, label)
            continue

        def content(file: IO[bytes] = part.file) -> Iterator[bytes]:
            yield opening
            file.seek(0)
            while chunk := file.read(CHUNK):
                yield chunk
            yield closing

        length = len(opening) + part.size + len(closing)
        request = client.build_request(
            "POST", url, headers={**upstream_headers, "content-length": str(length)}, content=content()
        )
        try:
            response = client.send(request)
        except httpx.HTTPError as exc:
            logger.warning("STOW: Orthanc unreachable: %s", exc)
            if not result.stored and not result.failed:
                return None
            result.fail(head, PROCESSING_FAILURE, "image archive (Orthanc) unreachable; later parts not read", label)
            break
        answer = _json(response)
        stored = _items(answer, "00081199")
        failed = _items(answer, "00081198")
        if response.is_success and stored:
            result.stored += stored
            result.retrieve_url = result.retrieve_url or _first(answer, "00081190")
        if failed:
            for item in failed:
                item.setdefault("00000902", {"vr": "LO", "Value": ["refused by the image archive"]})
            result.failed += failed
            result.warnings.append(f"{_header_value(head, 'SOPInstanceUID')}: refused by the image archive")
        elif not stored or not response.is_success:
            result.fail(head, PROCESSING_FAILURE, f"image archive refused it (HTTP {response.status_code})", label)
    return result


def _json(response: httpx.Response) -> dict:
    try:
        data = json.loads(response.content) if response.content else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _items(answer: dict, tag: str) -> list[dict]:
    element = answer.get(tag)
    value = element.get("Value") if isinstance(element, dict) else None
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _first(answer: dict, tag: str) -> str | None:
    element = answer.get(tag)
    value = element.get("Value") if isinstance(element, dict) else None
    return str(value[0]) if isinstance(value, list) and value else None
