"""DICOMweb proxy overhead: fetch every frame of one series through the app vs from Orthanc.

    .venv/bin/python benchmarks/proxy_overhead.py [--instances 100] [--matrix 320] [--repeats 3]
        [--baseline DIR]

Starts Orthanc and the app under gunicorn (real HTTP, SQLite, token auth), stores one series,
then fetches its metadata and every WADO-RS frame, sequentially, directly and via the proxy,
the paths taking turns in each round (each going first in turn) so that all see the same load. Reports the best of
``--repeats`` for each path and the ratio proxy/direct, twice:

- ``identity``: both ask for uncompressed answers, so both move the same bytes: the proxy's own
  cost per request (authentication, routing, blinding check, one more process hop);
- ``gzip``: both send what a browser sends (``Accept-Encoding: gzip, deflate``). Orthanc then
  gzips every frame itself, while the proxy asks Orthanc for pixel data uncompressed
  (``reviewer.integrations.dicomweb_relay``): what the viewer waits for.

``--baseline DIR`` serves another checkout of the app (e.g. ``git worktree add /tmp/old main``)
the same way on the same Orthanc and database and measures it in the same rounds.
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
ENCODINGS = ("identity", "gzip, deflate")


def fetch_series(client: httpx.Client, study: str, series: str, sops: list[str], encoding: str) -> float:
    t0 = time.perf_counter()
    client.get(f"/dicom-web/studies/{study}/series/{series}/metadata",
               headers={"Accept-Encoding": encoding}).raise_for_status()  # fmt: skip
    for sop in sops:
        r = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1",
                       headers={"Accept": FRAME_ACCEPT, "Accept-Encoding": encoding})  # fmt: skip
        r.raise_for_status()
        assert len(r.content) > 1000
    return time.perf_counter() - t0


def serve(tree: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """gunicorn on ``tree``'s app (2 workers x 4 threads, as in production.py's defaults)."""
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "webapp.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "2",
         "--threads", "4", "-k", "gthread", "--log-level", "warning"],
        cwd=tree, env={**env, "DJANGO_SETTINGS_MODULE": "webapp.settings.local"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(base + "/api/health/").status_code in (200, 503), 60, "gunicorn", web)
    return web, base


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--matrix", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout of the app, measured beside this one")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spinereview-proxy-"))
    study_uid, files = write_study(tmp / "s", protocol=(SeriesSpec("SAG T2", 3500, 100, n=args.instances,
                                                                   matrix=args.matrix),))  # fmt: skip
    orthanc = start_orthanc(tmp / "orthanc")
    env = {**os.environ, **orthanc.env, "DJANGO_SETTINGS_MODULE": "webapp.settings.local",
           "SPINEREVIEW_VAR_DIR": str(tmp / "var"), "SPINEREVIEW_DEBUG": "0"}  # fmt: skip
    auth = (env["SPINEREVIEW_ORTHANC_USERNAME"], env["SPINEREVIEW_ORTHANC_PASSWORD"])
    py = sys.executable
    servers: list[subprocess.Popen] = []
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
            trees = {"through the proxy": ROOT} | ({"proxy (baseline)": args.baseline} if args.baseline else {})
            clients = {"direct from Orthanc": direct}
            for name, tree in trees.items():
                web, base = serve(tree, env)
                servers.append(web)
                clients[name] = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=60)
            n = len(sops)
            print(f"series: {n} instances {args.matrix}x{args.matrix} (metadata + every frame, sequential), "
                  f"best of {args.repeats}, paths in turn, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
            for encoding in ENCODINGS:
                for client in clients.values():  # warm up every path
                    fetch_series(client, study_uid, series_uid, sops[:3], encoding)
                best = dict.fromkeys(clients, float("inf"))
                names = list(clients)
                for turn in range(args.repeats):  # each path goes first in turn
                    for name in names[turn % len(names) :] + names[: turn % len(names)]:
                        best[name] = min(best[name], fetch_series(clients[name], study_uid, series_uid, sops, encoding))
                print(f"Accept-Encoding: {encoding}")
                for name, seconds in best.items():
                    ratio = seconds / best["direct from Orthanc"]
                    print(f"  {name:20s}: {seconds:6.2f} s  ({n / seconds:6.1f} frames/s)  ratio {ratio:.2f}")
            for client in clients.values():
                if client is not direct:
                    client.close()
    finally:
        for web in servers:
            web.terminate()
            web.wait()
        orthanc.stop()


if __name__ == "__main__":
    main()
