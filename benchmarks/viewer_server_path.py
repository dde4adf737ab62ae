"""The server's part of the viewer's first image, without a browser: the requests OHIF 3.13.2
makes between loading its code and drawing (``viewer_first_image.py --waterfall`` shows them),
replayed in the same order and concurrency against the real app (runserver) and Orthanc.

    python -m scripts.services run -- python benchmarks/viewer_server_path.py [--rounds 8]
        [--baseline DIR ...]

Each round opens the page (the document and ``/app-config.js``, as the browser does), waits
``--delay`` seconds (what the browser spends loading OHIF: about 0.6 s warm, 1.8 s cold here),
then times: the study search, then the second study search, the panel's study JSON and the
series search together; then every series' metadata (six at once, a browser's connection
limit); then the first frame of each image series. It prints the medians of the time until the
series search answered, until all metadata answered, and until the frames are in. The browser's
own work (compiling OHIF, hanging, decoding, drawing) is left out, so the figures move only with
the server, far less with the machine's load than the end-to-end ones. ``--baseline`` serves
other checkouts the same way (one runserver each, same database and Orthanc), in turn.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
from viewer_first_image import prepare, runserver  # noqa: E402

JSON = {"Accept": "application/dicom+json", "Accept-Encoding": "gzip, deflate, br"}
FRAME = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*",
         "Accept-Encoding": "gzip, deflate, br"}  # fmt: skip
# OHIF 3.13.2's queries (its data source's includefield lists)
STUDY_SEARCH = "/dicom-web/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060" \
               "%2C00080090%2C00100030&StudyInstanceUID={study}"  # fmt: skip
SERIES_SEARCH = "/dicom-web/studies/{study}/series?includefield=00080021%2C00080031%2C0008103E%2C00200011"


def signed_in(base: str, username: str) -> httpx.Client:
    """A client with a session on ``base`` and six connections at most, like a browser."""
    client = httpx.Client(base_url=base, timeout=60, limits=httpx.Limits(max_connections=6))
    client.get("/accounts/login/")
    form = {"username": username, "password": "pw", "csrfmiddlewaretoken": client.cookies["csrftoken"]}
    client.post("/accounts/login/", headers={"Referer": f"{base}/accounts/login/"}, data=form)
    assert "sessionid" in client.cookies, "login failed"
    return client


def first_images(study: str) -> dict[str, str]:
    """Image series -> its first instance, straight from Orthanc."""
    auth = (os.environ["SPINEREVIEW_ORTHANC_USERNAME"], os.environ["SPINEREVIEW_ORTHANC_PASSWORD"])
    with httpx.Client(base_url=os.environ["SPINEREVIEW_ORTHANC_URL"], auth=auth) as orthanc:
        rows = orthanc.get(f"/dicom-web/studies/{study}/series").json()
        series = [r["0020000E"]["Value"][0] for r in rows if r["00080060"]["Value"][0] == "MR"]
        return {s: orthanc.get(f"/dicom-web/studies/{study}/series/{s}/instances").json()[0]["00080018"]["Value"][0]
                for s in series}  # fmt: skip


def one_load(client: httpx.Client, study: str, images: dict[str, str], delay: float,
             pool: ThreadPoolExecutor) -> tuple[float, float, float]:  # fmt: skip
    """(series search, all metadata, frames) in seconds after OHIF's first request."""
    page = str(client.base_url.join(f"/spine-review?StudyInstanceUIDs={study}"))
    client.get(f"/spine-review?StudyInstanceUIDs={study}")
    client.get("/app-config.js", headers={"Referer": page})
    time.sleep(delay)
    t0 = time.perf_counter()
    client.get(STUDY_SEARCH.format(study=study), headers=JSON).raise_for_status()
    beside = [pool.submit(client.get, STUDY_SEARCH.format(study=study), headers=JSON),
              pool.submit(client.get, f"/api/viewer/studies/{study}/")]  # fmt: skip
    found = client.get(SERIES_SEARCH.format(study=study), headers=JSON)
    found.raise_for_status()
    searched = time.perf_counter() - t0
    metadata = [pool.submit(client.get, f"/dicom-web/studies/{study}/series/{row['0020000E']['Value'][0]}/metadata",
                            headers=JSON) for row in found.json()]  # fmt: skip
    for future in metadata + beside:
        future.result().raise_for_status()
    described = time.perf_counter() - t0
    frames = [pool.submit(client.get, f"/dicom-web/studies/{study}/series/{s}/instances/{sop}/frames/1",
                          headers=FRAME) for s, sop in images.items()]  # fmt: skip
    for future in frames:
        future.result().raise_for_status()
    return searched, described, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--delay", type=float, nargs="+", default=[0.6, 1.8])
    parser.add_argument("--baseline", type=Path, nargs="*", default=[], help="other checkouts, measured in turn")
    args = parser.parse_args()
    if "SPINEREVIEW_ORTHANC_URL" not in os.environ:
        parser.error("run under: python -m scripts.services run -- python benchmarks/viewer_server_path.py")
    from scripts.services import free_port

    trees = {"this checkout": ROOT} | {f"baseline {tree}": tree for tree in args.baseline}
    timings: dict[tuple[str, float], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="viewer-path-") as tmp, ThreadPoolExecutor(16) as pool:
        study, username = prepare(Path(tmp) / "synth")
        images = first_images(study)
        ports = {name: free_port() for name in trees}
        servers = [runserver(tree, ports[name], Path(tmp) / f"runserver-{i}.log")
                   for i, (name, tree) in enumerate(trees.items())]  # fmt: skip
        try:
            clients = {name: signed_in(f"http://127.0.0.1:{ports[name]}", username) for name in trees}
            names = list(trees)
            for turn in range(args.rounds):
                for delay in args.delay:
                    for name in names[turn % len(names) :] + names[: turn % len(names)]:  # each first in turn
                        timings.setdefault((name, delay), []).append(
                            one_load(clients[name], study, images, delay, pool)
                        )
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=20)
    print(f"viewer's server path, 4-series study, {args.rounds} rounds, Django runserver, "
          f"load average {os.getloadavg()[0]:.2f}; ms after OHIF's first request, medians")  # fmt: skip
    for (name, delay), runs in timings.items():
        search, metadata, frames = (statistics.median(run[i] for run in runs) * 1000 for i in range(3))
        print(f"  {name}, page opened {delay:.1f} s before: series search {search:5.0f}, "
              f"metadata {metadata:5.0f}, frames {frames:5.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
