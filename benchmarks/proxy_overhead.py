"""DICOMweb proxy overhead: fetch every frame of one series through the app vs from Orthanc.

    .venv/bin/python benchmarks/proxy_overhead.py [--instances 100] [--matrix 320] [--repeats 5]
        [--auth token|session] [--deployed] [--nginx] [--baseline DIR]

Starts Orthanc and the app under gunicorn (real HTTP, SQLite), stores one series, then fetches
its metadata and every WADO-RS frame, sequentially, directly and via the proxy. The paths take
turns request by request (each request is sent on every path, in an order drawn anew for each
request, seeded so that runs repeat it), so that on a shared, loaded machine all paths see the
same moments of load, and no path always follows the same one (with a fixed cyclic order, the
path right after a Django path shared the CPU with that request's teardown: about 0.2 ms per
frame for the nginx path that always came after the proxy, at load 5-9).
Reports per path the best and the median of ``--repeats`` round totals and the median single
request, each with its ratio to Orthanc direct:

- ``frames, same bytes``: both ask for uncompressed answers and the same transfer syntax (as
  stored); before timing, every frame's payload and its part's Content-Type are checked equal on
  every path (only the multipart boundary, random per answer, differs). The proxy's own cost per
  request (authentication, routing, roles, blinding check, one more process hop);
- ``bare relay``: the same gunicorn relaying the same requests to Orthanc with no check at all
  (no Django): what the extra hop alone costs, the floor of any proxy in front of Orthanc;
- ``series metadata`` (5 requests a round): not the same bytes, the proxy's answer is filtered for the
  reader's role (a radiologist: identities removed);
- ``as a browser asks`` (``Accept-Encoding: gzip, deflate``, metadata and frames): Orthanc then
  gzips every frame itself, while the proxy asks Orthanc for pixel data uncompressed
  (``reviewer.integrations.dicomweb_relay``): what the viewer waits for.

``--nginx`` adds the deployment's viewer nginx (``ohif-extension/deploy/nginx.conf`` as shipped,
filled in by ``tests/viewer_nginx.py``) in front of this checkout's app, as deployed: for each frame
nginx asks the app (every check) whether this credential may read it and keeps the app's yes per
credential and series for ``SPINEREVIEW_PIXEL_AUTH_TTL`` seconds (the shipped default), then
fetches the frame from Orthanc over kept-alive connections. Beside it the same with
``SPINEREVIEW_PIXEL_AUTH_TTL=0`` (a second app and nginx: every frame asks the app), ``nginx
alone``, the same nginx relaying frames to Orthanc with no check (the floor of that path), and
with ``--baseline`` the baseline checkout's own nginx config in front of the baseline app.

``--auth session`` authenticates with a session cookie, as the viewer does (default: an API
token, as scripts do). ``--deployed`` gives the app PostgreSQL and a Redis cache, as deployed
(default: SQLite and each gunicorn worker's memory, as in the demo); on a loaded machine every
round trip to another process then waits for that process to be scheduled. ``--baseline DIR``
serves another checkout of the app (e.g. ``git worktree add /tmp/old main``) the same way on the
same Orthanc and database and measures it in the same rounds.
"""

from __future__ import annotations

import argparse
import base64
import functools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from scripts.services import Service, free_port, start_orthanc, start_postgres, start_redis, wait_until  # noqa: E402
from tests import viewer_nginx  # noqa: E402
from tests.dicom_factory import SeriesSpec, write_study  # noqa: E402

MAKE_CREDENTIALS = """
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.authtoken.models import Token
u, _ = User.objects.get_or_create(username="bench")
u.groups.add(Group.objects.get(name="radiologist"))
client = Client()
client.force_login(u)
print(Token.objects.get_or_create(user=u)[0].key, client.cookies[settings.SESSION_COOKIE_NAME].value)
"""
# the floor: a WSGI relay with no checks, served by the same gunicorn as the app
BARE_RELAY = """
import os, httpx
client = httpx.Client(base_url=os.environ["SPINEREVIEW_ORTHANC_URL"], timeout=60,
                      auth=(os.environ["SPINEREVIEW_ORTHANC_USERNAME"], os.environ["SPINEREVIEW_ORTHANC_PASSWORD"]))
def application(environ, start_response):
    url = environ["PATH_INFO"] + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
    headers = {"accept": environ.get("HTTP_ACCEPT", "*/*"), "accept-encoding": "identity"}
    response = client.send(client.build_request("GET", url, headers=headers), stream=True)
    start_response(f"{response.status_code} Relayed", [(k, v) for k, v in response.headers.items()
                                                      if k in ("content-type", "content-length")])
    def body():
        try:
            yield from response.iter_raw(1024 * 1024)
        finally:
            response.close()
    return body()
"""
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
DIRECT = "direct from Orthanc"
BARE = "bare relay (no checks)"
NGINX = "nginx, TTL default"
NGINX_TTL0 = "nginx, TTL 0"
NGINX_ALONE = "nginx alone (no check)"
NGINX_BASELINE = "nginx (baseline)"
# the floor of the nginx path: the shipped config's Orthanc upstream, no check at all
NGINX_ALONE_SERVER = """
server {
  listen 127.0.0.1:%(port)d;
  location /dicom-web/ {
    proxy_pass http://orthanc_http; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header Authorization "%(authorization)s"; proxy_set_header Accept-Encoding ""; proxy_buffering off;
  }
}
"""
IDENTITY_FRAME = {"Accept": FRAME_ACCEPT, "Accept-Encoding": "identity"}
Request = Callable[[httpx.Client], float]


def frame_url(study: str, series: str, sop: str) -> str:
    return f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1"


def parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """A multipart/related answer's parts as (Content-Type, payload): what is compared."""
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    out = []
    for chunk in response.content.split(b"--" + boundary)[1:-1]:
        head, _, payload = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        content_type = next((line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                             if line.lower().startswith(b"content-type:")), b"")  # fmt: skip
        out.append((content_type.decode(), payload.removesuffix(b"\r\n")))
    return out


def check_same_frames(clients: dict[str, httpx.Client], study: str, series: str, sops: list[str]) -> str:
    """Every path answers every frame with the same payload and part Content-Type as Orthanc;
    returns the transfer syntaxes seen."""
    syntaxes = set()
    for sop in sops:
        answers = {}
        for name, client in clients.items():
            r = client.get(frame_url(study, series, sop), headers=IDENTITY_FRAME)
            r.raise_for_status()
            assert "content-encoding" not in r.headers, (name, r.headers)
            answers[name] = parts(r)
        for name, got in answers.items():
            assert got == answers[DIRECT], f"{name} answers frame {sop} differently from Orthanc"
        syntaxes |= {ct.split("transfer-syntax=")[-1] for ct, _ in answers[DIRECT]}
    return ", ".join(sorted(syntaxes))


def get_metadata(client: httpx.Client, study: str, series: str, encoding: str) -> float:
    t0 = time.perf_counter()
    client.get(f"/dicom-web/studies/{study}/series/{series}/metadata",
               headers={"Accept-Encoding": encoding}).raise_for_status()  # fmt: skip
    return time.perf_counter() - t0


def get_frame(client: httpx.Client, study: str, series: str, sop: str, encoding: str) -> float:
    t0 = time.perf_counter()
    r = client.get(frame_url(study, series, sop), headers={"Accept": FRAME_ACCEPT, "Accept-Encoding": encoding})
    r.raise_for_status()
    assert len(r.content) > 1000
    return time.perf_counter() - t0


def requests_for(study: str, series: str, sops: list[str], encoding: str) -> list[Request]:
    """The series' metadata request, then one request per frame."""
    metadata = functools.partial(get_metadata, study=study, series=series, encoding=encoding)
    frames = [functools.partial(get_frame, study=study, series=series, sop=sop, encoding=encoding) for sop in sops]
    return [metadata, *frames]


def serve(app: str, env: dict[str, str], cwd: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """gunicorn on ``app`` (2 workers x 4 threads, as in production.py's defaults)."""
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", app, "-b", f"127.0.0.1:{port}", "-w", "2", "--threads", "4",
         "-k", "gthread", "--log-level", "warning", *extra],
        cwd=cwd, env={**env, "DJANGO_SETTINGS_MODULE": "webapp.settings.local"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(base + "/dicom-web/studies", timeout=5).status_code > 0, 60, "gunicorn", web)
    return web, base


def measure(title: str, requests: list[Request], clients: dict[str, httpx.Client], repeats: int) -> None:
    """``repeats`` rounds of ``requests``, each request sent on every path in an order drawn for
    that request (seeded); per path its round totals and single requests."""
    names = list(clients)
    for request in requests[:3]:  # warm up every path
        for client in clients.values():
            request(client)
    totals: dict[str, list[float]] = {name: [] for name in names}
    each: dict[str, list[float]] = {name: [] for name in names}
    turn = 0
    for _ in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        for request in requests:
            for name in random.Random(turn).sample(names, len(names)):
                seconds = request(clients[name])
                spent[name] += seconds
                each[name].append(seconds)
            turn += 1
        for name in names:
            totals[name].append(spent[name])
    best = {name: min(t) for name, t in totals.items()}
    median = {name: statistics.median(t) for name, t in totals.items()}
    one = {name: statistics.median(t) for name, t in each.items()}
    print(title)
    for name in names:
        print(f"  {name:24s}: round best {best[name] * 1e3:7.1f} ms, median {median[name] * 1e3:7.1f} ms; median "
              f"request {one[name] * 1e3:6.2f} ms  ratios to direct: round {median[name] / median[DIRECT]:.2f} "
              f"(best {best[name] / best[DIRECT]:.2f}), request {one[name] / one[DIRECT]:.2f}")  # fmt: skip


def start_nginx(folder: Path, app_port: int, env: dict[str, str], servers: list[subprocess.Popen],
                config: Path = viewer_nginx.CONFIG, alone: bool = False) -> tuple[str, str | None]:  # fmt: skip
    """``config`` (the shipped viewer nginx, or a baseline checkout's) in front of the app on
    ``app_port`` and, with ``alone``, beside it a server of the same nginx relaying to Orthanc with
    no check; their base URLs."""
    binary = viewer_nginx.nginx_binary()
    if binary is None:
        raise SystemExit("--nginx: nginx is not installed (apt-get install nginx-light)")
    port, alone_port = free_port(), free_port()
    auth = (env["SPINEREVIEW_ORTHANC_USERNAME"], env["SPINEREVIEW_ORTHANC_PASSWORD"])
    args = viewer_nginx.write_config(folder, port=port, app_port=app_port, orthanc_url=env["SPINEREVIEW_ORTHANC_URL"],
                                     orthanc_auth=auth, config=config)  # fmt: skip
    if alone:
        authorization = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        with (folder / "viewer.conf").open("a") as conf:
            conf.write(NGINX_ALONE_SERVER % {"port": alone_port, "authorization": authorization})
    servers.append(viewer_nginx.start(binary, args))
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/dicom-web/studies").status_code == 401, 30, "nginx")
    return f"http://127.0.0.1:{port}", f"http://127.0.0.1:{alone_port}" if alone else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--matrix", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--auth", choices=("token", "session"), default="token")
    parser.add_argument("--deployed", action="store_true", help="PostgreSQL and a Redis cache, as deployed")
    parser.add_argument("--nginx", action="store_true", help="also through the deployment's viewer nginx")
    parser.add_argument("--baseline", type=Path, help="another checkout of the app, measured beside this one")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spinereview-proxy-"))
    study_uid, files = write_study(tmp / "s", protocol=(SeriesSpec("SAG T2", 3500, 100, n=args.instances,
                                                                   matrix=args.matrix),))  # fmt: skip
    services: list[Service] = [start_orthanc(tmp / "orthanc")]
    env = {**os.environ, **services[0].env, "DJANGO_SETTINGS_MODULE": "webapp.settings.local",
           "SPINEREVIEW_VAR_DIR": str(tmp / "var"), "SPINEREVIEW_DEBUG": "0"}  # fmt: skip
    if args.deployed:
        for name in ("postgres", "redis"):
            (tmp / name).mkdir()
        services += [start_postgres(tmp / "postgres"), start_redis(tmp / "redis")]
        env["DATABASE_URL"] = services[1].env["DATABASE_URL"]
        env["SPINEREVIEW_CACHE_URL"] = services[2].env["CELERY_BROKER_URL"].removesuffix("/0") + "/1"
    env.pop("SPINEREVIEW_PIXEL_AUTH_TTL", None)  # the shipped default
    if args.nginx:  # the app hands pixel data to nginx only when nginx says it stands in front
        env["SPINEREVIEW_DICOMWEB_ACCEL"] = viewer_nginx.ACCEL_PREFIX
    (tmp / "bare_relay.py").write_text(BARE_RELAY)
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
            token, session = subprocess.run(
                [py, "manage.py", "shell", "-c", MAKE_CREDENTIALS],
                cwd=ROOT, env=env, check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1].split()  # fmt: skip
            credentials = {"Authorization": f"Token {token}"} if args.auth == "token" else {
                "Cookie": f"sessionid={session}"}  # fmt: skip
            apps: dict[str, tuple[str, Path, tuple[str, ...], dict[str, str]]] = {
                BARE: ("bare_relay:application", tmp, ("--pythonpath", str(tmp)), {}),
                "through the proxy": ("webapp.wsgi:application", ROOT, (), {}),
            }
            if args.baseline:
                apps["proxy (baseline)"] = ("webapp.wsgi:application", args.baseline, (), {})
            if args.nginx:  # served only behind its nginx
                apps[NGINX_TTL0] = ("webapp.wsgi:application", ROOT, (), {"SPINEREVIEW_PIXEL_AUTH_TTL": "0"})
            clients = {DIRECT: direct}
            for name, (app, cwd, extra, app_env) in apps.items():
                web, base = serve(app, {**env, **app_env}, cwd, extra)
                servers.append(web)
                app_port = int(base.rsplit(":", 1)[1])
                if name != NGINX_TTL0:
                    clients[name] = httpx.Client(base_url=base, headers=credentials, timeout=60)
                if not args.nginx or name == BARE:
                    continue
                if name == "through the proxy":
                    front, alone = start_nginx(tmp / "nginx", app_port, env, servers, alone=True)
                    clients[NGINX] = httpx.Client(base_url=front, headers=credentials, timeout=60)
                    clients[NGINX_ALONE] = httpx.Client(base_url=str(alone), timeout=60)
                elif name == NGINX_TTL0:
                    front, _ = start_nginx(tmp / "nginx-ttl0", app_port, env, servers)
                    clients[NGINX_TTL0] = httpx.Client(base_url=front, headers=credentials, timeout=60)
                else:
                    config = args.baseline / "ohif-extension" / "deploy" / "nginx.conf"
                    front, _ = start_nginx(tmp / "nginx-baseline", app_port, env, servers, config=config)
                    clients[NGINX_BASELINE] = httpx.Client(base_url=front, headers=credentials, timeout=60)
            syntax = check_same_frames(clients, study_uid, series_uid, sops)
            stores = "PostgreSQL, Redis cache" if args.deployed else "SQLite, per-process memory cache"
            print(f"series: {len(sops)} instances {args.matrix}x{args.matrix}, sequential requests, "
                  f"{args.repeats} rounds, paths in a random order per request; auth {args.auth}; {stores}; "
                  f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
            identity = requests_for(study_uid, series_uid, sops, "identity")
            as_browser = requests_for(study_uid, series_uid, sops, "gzip, deflate")
            measure(f"frames, same bytes both ways (Accept-Encoding: identity, transfer syntax {syntax}; payloads "
                    "checked equal):", identity[1:], clients, args.repeats)  # fmt: skip
            proxies = {k: v for k, v in clients.items() if k not in (BARE, NGINX_ALONE)}
            measure("series metadata (Accept-Encoding: identity; the proxy's is filtered for a radiologist):",
                    identity[:1] * 5, proxies, args.repeats)  # fmt: skip
            measure("as a browser asks (Accept-Encoding: gzip, deflate; metadata + every frame):", as_browser,
                    proxies, args.repeats)  # fmt: skip
            print(f"load average at the end {os.getloadavg()[0]:.2f}")
            for client in clients.values():
                if client is not direct:
                    client.close()
    finally:
        for web in servers:
            web.terminate()
            web.wait()
        for service in services:
            service.close()


if __name__ == "__main__":
    main()
