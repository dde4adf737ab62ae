"""Import throughput: ``import_dicom``'s path vs a raw upload of the same files to Orthanc.

    .venv/bin/python benchmarks/import_speed.py [--instances 300] [--matrix 320]

Starts its own Orthanc (scripts/services.py), writes a folder of MR instances, then uploads
it (1) raw: one POST /instances per file, keep-alive, no checks, sequential and with the same
thread count; (2) through ``reviewer.integrations.ingest.import_paths`` (pydicom header check +
concurrent POSTs). Orthanc is emptied between runs. Prints instances/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.test")

import httpx  # noqa: E402

from scripts.services import start_orthanc  # noqa: E402
from tests.dicom_factory import SeriesSpec, write_study  # noqa: E402


def empty(client: httpx.Client) -> None:
    for sid in client.get("/studies").json():
        client.delete(f"/studies/{sid}")


def raw_upload(client: httpx.Client, files: list[Path], workers: int) -> float:
    def post(path: Path) -> None:
        client.post("/instances", content=path.read_bytes()).raise_for_status()

    t0 = time.perf_counter()
    if workers == 1:
        for f in files:
            post(f)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(post, files))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--matrix", type=int, default=320)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="spinereview-bench-"))
    per_series = args.instances // 3
    protocol = tuple(SeriesSpec(f"SERIES {i}", tr=500 + 1500 * i, te=15 + 40 * i, n=per_series, matrix=args.matrix)
                     for i in range(3))  # fmt: skip
    _, files = write_study(tmp / "study", protocol=protocol)
    size_mb = sum(f.stat().st_size for f in files) / 2**20
    print(f"{len(files)} instances, {args.matrix}x{args.matrix}, {size_mb:.0f} MB")

    orthanc = start_orthanc(tmp / "orthanc")
    env = orthanc.env
    try:
        os.environ.update(env)
        import django

        django.setup()
        from reviewer.integrations.ingest import import_paths
        from reviewer.integrations.orthanc import orthanc as app_client

        auth = (env["SPINEREVIEW_ORTHANC_USERNAME"], env["SPINEREVIEW_ORTHANC_PASSWORD"])
        with httpx.Client(base_url=env["SPINEREVIEW_ORTHANC_URL"], auth=auth, timeout=60) as client:
            rows = []
            for label, run in (
                ("raw REST upload, sequential", lambda: raw_upload(client, files, 1)),
                (f"raw REST upload, {args.workers} threads", lambda: raw_upload(client, files, args.workers)),
                (f"import_dicom path, {args.workers} workers",
                 lambda: import_paths([tmp / "study"], client=app_client(), workers=args.workers).seconds),
            ):  # fmt: skip
                empty(client)
                seconds = run()
                assert len(client.get("/instances").json()) == len(files), label
                rows.append((label, len(files) / seconds))
            for label, rate in rows:
                print(f"{label:<38} {rate:8.1f} instances/s")
            ours = rows[-1][1]
            print(f"ratio import_dicom / raw sequential: {ours / rows[0][1]:.2f}")
            print(f"ratio import_dicom / raw {args.workers} threads: {ours / rows[1][1]:.2f}")
    finally:
        orthanc.stop()


if __name__ == "__main__":
    main()
