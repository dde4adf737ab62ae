"""DICOMweb proxy overhead: fetch every frame of one series through the app vs from Orthanc.

    .venv/bin/python benchmarks/proxy_overhead.py [--instances 100] [--matrix 320] [--repeats 3]

Starts Orthanc and the app under gunicorn (real HTTP, SQLite, token auth), stores one series,
then fetches its WADO-RS frames and its metadata, sequentially, directly and via the proxy.
Reports the best of ``--repeats`` for each, and the ratio proxy/direct.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from scripts.services import free_port, start_orthanc, wait_until  # noqa: E402
from tests.dicom_factory import SeriesSpec, write_study  # noqa: E402

MAKE_TOKEN = """
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
u, _ = User.objects.get_or_create(username="bench")
u.groups.add(Group.objects.get(name="radiologist"))
print(Token.objects.get_or_create(user=u)[0].key)
"""
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def fetch_series(client: httpx.Client, study: str, series: str, sops: list[str]) -> float:
    t0 = time.perf_counter()
    client.get(f"/dicom-web/studies/{study}/series/{series}/metadata").raise_for_status()
    for sop in sops:
        r = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1",
                       headers={"Accept": FRAME_ACCEPT})  # fmt: skip
        r.raise_for_status()
        assert len(r.content) > 1000
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--matrix", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spinereview-proxy-"))
    study_uid, files = write_study(tmp / "s", protocol=(SeriesSpec("SAG T2", 3500, 100, n=args.instances,
                                                                   matrix=args.matrix),))  # fmt: skip
    orthanc = start_orthanc(tmp / "orthanc")
    env = {**os.environ, **orthanc.env, "DJANGO_SETTINGS_MODULE": "webapp.settings.local",
           "SPINEREVIEW_VAR_DIR": str(tmp / "var"), "SPINEREVIEW_DEBUG": "0"}  # fmt: skip
    auth = (env["SPINEREVIEW_ORTHANC_USERNAME"], env["SPINEREVIEW_ORTHANC_PASSWORD"])
    py = sys.executable
    web = None
    try:
        with httpx.Client(base_url=env["SPINEREVIEW_ORTHANC_URL"], auth=auth, timeout=60) as direct:
            for f in files:
                direct.post("/instances", content=f.read_bytes()).raise_for_status()
            series_uid = direct.get(f"/dicom-web/studies/{study_uid}/series").json()[0]["0020000E"]["Value"][0]
            inst = direct.get(f"/dicom-web/studies/{study_uid}/series/{series_uid}/instances").json()
            sops = [i["00080018"]["Value"][0] for i in inst]

            subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            token = subprocess.run(
                [py, "manage.py", "shell", "-c", MAKE_TOKEN],
                cwd=ROOT, env=env, check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]  # fmt: skip
            port = free_port()
            web = subprocess.Popen(
                [py, "-m", "gunicorn", "webapp.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "2",
                 "--threads", "4", "-k", "gthread", "--log-level", "warning"],
                cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "webapp.settings.local"},
            )  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: httpx.get(base + "/api/health/").status_code in (200, 503), 60, "gunicorn", web)
            with httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=60) as proxied:
                fetch_series(proxied, study_uid, series_uid, sops[:3])  # warm up both paths
                fetch_series(direct, study_uid, series_uid, sops[:3])
                t_direct = min(fetch_series(direct, study_uid, series_uid, sops) for _ in range(args.repeats))
                t_proxy = min(fetch_series(proxied, study_uid, series_uid, sops) for _ in range(args.repeats))
        n = len(sops)
        print(f"series: {n} instances {args.matrix}x{args.matrix} (metadata + every frame, sequential)")
        print(f"direct from Orthanc : {t_direct:6.2f} s  ({n / t_direct:6.1f} frames/s)")
        print(f"through the proxy   : {t_proxy:6.2f} s  ({n / t_proxy:6.1f} frames/s)")
        print(f"ratio proxy/direct time: {t_proxy / t_direct:.2f}")
    finally:
        if web:
            web.terminate()
            web.wait()
        orthanc.stop()


if __name__ == "__main__":
    main()
