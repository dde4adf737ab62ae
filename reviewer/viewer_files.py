"""The viewer origin's files (OHIF's prebuilt ``dist/`` and our extension bundle) as Django serves
them in development and in the demo; nginx serves the same files the same way in deployment
(``ohif-extension/deploy/nginx.conf``): a gzip sibling written once ahead of time
(``precompress``, ``manage.py precompress_viewer``) where the browser takes gzip, content-hashed
files kept for good (``immutable``), every other file revalidated with its ETag (a 304, not its
bytes)."""

from __future__ import annotations

import gzip
import mimetypes
import os
import shutil
from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.http import http_date

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")

# Text-like files worth sending compressed (the OHIF app bundle is 17 MB of JavaScript, 4 MB gzipped).
COMPRESSIBLE = frozenset({".js", ".mjs", ".css", ".wasm", ".json", ".html", ".svg", ".map", ".txt"})
MIN_COMPRESS_BYTES = 1024
IMMUTABLE = "public, max-age=31536000, immutable"


def precompress(folder: Path) -> int:
    """Write a gzip sibling (``name.gz``, as nginx's ``gzip_static`` expects) of every
    compressible file under ``folder`` that lacks an up-to-date one; the number written.

    Compressing once ahead of time costs nothing per request, where compressing per response
    would spend a core on the same 40 MB for every cold browser."""
    written = 0
    for path in sorted(folder.rglob("*")):
        if path.suffix not in COMPRESSIBLE or not path.is_file() or path.stat().st_size < MIN_COMPRESS_BYTES:
            continue
        target = path.with_name(path.name + ".gz")
        if target.is_file() and target.stat().st_mtime_ns >= path.stat().st_mtime_ns:
            continue
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with (
            path.open("rb") as src,
            partial.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as out,
        ):
            shutil.copyfileobj(src, out, 1 << 20)
        if partial.stat().st_size >= path.stat().st_size * 0.9:  # not worth a decompression
            partial.unlink()
            continue
        partial.replace(target)  # atomic: a request never reads half a file
        written += 1
    return written


def _accepts_gzip(request: HttpRequest) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def serve_file(
    request: HttpRequest, folder: Path, relative: str, *, fallback: Path | None, immutable: bool
) -> HttpResponse:
    """One file of ``folder``: its gzip sibling when the browser takes gzip and the sibling is as
    new as the file; a 304 when the browser's copy is current (ETag or Last-Modified), so a file
    that must be revalidated (``no-cache``) costs a round trip, not its bytes."""
    root = folder.resolve()
    target = (root / relative).resolve() if relative else root / "index.html"
    if not target.is_relative_to(root):
        raise Http404("outside the viewer folder")
    if not target.is_file():
        if fallback is None:
            raise Http404(relative)
        target = fallback
    stat = target.stat()
    body = target
    encoding = ""
    if target.suffix in COMPRESSIBLE and _accepts_gzip(request):
        packed = target.with_name(target.name + ".gz")
        try:
            if packed.stat().st_mtime_ns >= stat.st_mtime_ns:
                body, encoding = packed, "gzip"
        except OSError:
            pass
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}{"-gz" if encoding else ""}"'
    cache_control = IMMUTABLE if immutable else "no-cache"
    not_modified = get_conditional_response(request, etag=etag, last_modified=int(stat.st_mtime))
    if not_modified is not None:
        response: HttpResponse = not_modified
    else:
        content_type, _ = mimetypes.guess_type(target.name)
        response = FileResponse(body.open("rb"), content_type=content_type or "application/octet-stream")
        response.block_size = 256 * 1024  # fewer, larger writes for the multi-megabyte bundles
        if encoding:
            response["Content-Encoding"] = encoding
        response["Last-Modified"] = http_date(stat.st_mtime)
    response["ETag"] = etag
    response["Cache-Control"] = cache_control
    if target.suffix in COMPRESSIBLE:
        patch_vary_headers(response, ("Accept-Encoding",))
    return response
