"""Orthanc's answers to a study's first DICOMweb questions, asked while the viewer still loads.

Before OHIF shows an image it asks, one after the other: the study, its series (QIDO), then every
series' metadata; only then does it hang the series and fetch frames. Those answers cost Orthanc
most of their time (the series search of the benchmark's study 140-200 ms, its AI SR series'
metadata 120-180 ms, on the 2-core test machine), and they are asked about two seconds after the
page was opened, time the browser spends loading OHIF's JavaScript. So when the viewer's page
asks for its ``/app-config.js``, the series search of the study it opens and every series'
metadata are asked of Orthanc on background threads (``prefetch_study``), and the proxy takes an
answer from here (``take``) instead of asking again, waiting for it if it is on its way.

What this does not change: the proxy's checks (authentication, route, role, blinding) all run
before ``take`` is consulted, and the identity and blinding rewrite is applied to the answer as
to Orthanc's own. The upstream request is the one the proxy would send (same URL, Host and
Accept), so the answer is the same. An answer is used once, and only within ``TTL_S`` of being
asked for: never older than if the browser had asked when the page opened. Answers are kept in
this process (with several worker processes it helps only when one worker serves the page and
its requests), ``MAX_BYTES`` and ``MAX_ENTRIES`` at most.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import httpx
from django.conf import settings

from reviewer.integrations.dicomweb_identities import IDENTITY_FREE, identity_free_json
from reviewer.integrations.dicomweb_routes import is_uid, upstream_url
from reviewer.integrations.orthanc import orthanc

logger = logging.getLogger(__name__)

TTL_S = 15.0
MAX_BYTES = 64 * 1024 * 1024  # all answers kept at once
MAX_ENTRIES = 256  # answers kept or on their way: opening pages never queues more work than this
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # one answer (a 300-instance series' metadata is a few MB)
ACCEPT = "application/dicom+json"
# the attributes OHIF 3.13.2's data source asks the series search for, as ``upstream_params``
# passes them on (one ``includefield`` each), so that the upstream URL is the same
OHIF_SERIES_FIELDS = ("00080021", "00080031", "0008103E", "00200011")


@dataclass(frozen=True)
class Answer:
    """One answer of Orthanc, read whole (DICOM JSON, uncompressed), and for a successful one
    the JSON every role but admin gets when it hides nothing of theirs (made here, off the
    request's path: for the 40-instance demo study's SR series that is 930 kB of JSON parsed)."""

    status: int
    content_type: str
    body: bytes
    identity_free: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.body) + len(self.identity_free or b"")


@dataclass
class _Entry:
    asked_at: float
    future: Future[Answer | None] = field(default_factory=Future)
    started: bool = False
    size: int = 0


_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dicomweb-prefetch")
_lock = threading.Lock()
_entries: dict[tuple[str, str], _Entry] = {}  # (upstream URL, Host) -> its answer


def _reserve(url: httpx.URL, host: str) -> _Entry | None:
    """A new entry for ``url``, or None when one is there already or memory is taken."""
    now = time.monotonic()
    with _lock:
        for key in [k for k, e in _entries.items() if now - e.asked_at > TTL_S]:
            del _entries[key]
        key = (str(url), host)
        if key in _entries or len(_entries) >= MAX_ENTRIES or sum(e.size for e in _entries.values()) >= MAX_BYTES:
            return None
        entry = _entries[key] = _Entry(now)
        return entry


def _read(url: httpx.URL, host: str) -> Answer | None:
    headers = {"host": host, "accept": ACCEPT, "accept-encoding": "identity"}
    with orthanc().stream("GET", url, headers=headers) as response:
        if int(response.headers.get("content-length") or 0) > MAX_ANSWER_BYTES:
            return None
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                return None
        content_type = response.headers.get("content-type", "")
        identity_free = None
        if response.status_code == 200 and "json" in content_type.lower() and body:
            with contextlib.suppress(ValueError):  # not JSON after all: the proxy's own path says so
                identity_free = identity_free_json(json.loads(body))
        return Answer(response.status_code, content_type, bytes(body), identity_free)


def _fetch(url: httpx.URL, host: str, entry: _Entry) -> Answer | None:
    """Ask Orthanc for ``url`` unless the proxy took the entry before this started."""
    key = (str(url), host)
    answer = None
    try:
        with _lock:
            if _entries.get(key) is not entry:
                return None
            entry.started = True
        answer = _read(url, host)
    except Exception as exc:  # any failure: the proxy then asks Orthanc itself
        logger.info("DICOMweb prefetch of %s failed: %s", url, exc)
    finally:
        with _lock:
            if _entries.get(key) is entry:
                if answer is None:
                    del _entries[key]
                else:
                    entry.size = answer.size
        entry.future.set_result(answer)
    return answer


def _fetch_study(study_uid: str, host: str, series_search: httpx.URL, entry: _Entry) -> None:
    answer = _fetch(series_search, host, entry)
    if answer is None or answer.status != 200:
        return
    try:
        series = [row["0020000E"]["Value"][0] for row in json.loads(answer.body)]
    except (ValueError, KeyError, IndexError, TypeError):
        return
    for series_uid in series:
        if not isinstance(series_uid, str) or not is_uid(series_uid):
            continue
        url = upstream_url(("studies", study_uid, "series", series_uid, "metadata"), [])
        if (reserved := _reserve(url, host)) is not None:
            _pool.submit(_fetch, url, host, reserved)


def prefetch_study(study_uid: str, host: str) -> bool:
    """Ask Orthanc, in the background, for what the viewer on origin ``host`` will ask first
    about ``study_uid``; False when nothing was started (not a UID, already on its way)."""
    if not is_uid(study_uid):
        return False
    fields = [("includefield", name) for name in OHIF_SERIES_FIELDS]
    series_search = upstream_url(("studies", study_uid, "series"), fields)
    entry = _reserve(series_search, host)
    if entry is None:
        return False
    _pool.submit(_fetch_study, study_uid, host, series_search, entry)
    return True


def take(url: httpx.URL, headers: dict[str, str]) -> httpx.Response | None:
    """The prefetched answer to this upstream request, used once, waited for if it is on its
    way; None when there is none, it is too old or not started yet, or the request is not the
    one prefetched (another Accept, a Range)."""
    if headers.get("accept") != ACCEPT or "range" in headers:
        return None
    with _lock:
        entry = _entries.pop((str(url), headers.get("host", "")), None)
        if entry is None or time.monotonic() - entry.asked_at > TTL_S or not entry.started:
            return None  # an entry not started yet is dropped: asking Orthanc now is quicker
    try:
        answer = entry.future.result(timeout=settings.ORTHANC_TIMEOUT_S)
    except FutureTimeout:
        return None
    if answer is None:
        return None
    response_headers = {"content-type": answer.content_type, "content-length": str(len(answer.body))}
    extensions = {IDENTITY_FREE: answer.identity_free} if answer.identity_free is not None else {}
    return httpx.Response(
        answer.status, headers=response_headers, stream=httpx.ByteStream(answer.body), extensions=extensions
    )
