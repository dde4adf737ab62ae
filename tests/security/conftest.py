"""The app as deployed, for attacks: gunicorn (the deployment's server, which keeps the raw
request line in ``RAW_URI``) on the test database, in front of the test Orthanc.

Requests go over real HTTP, with targets sent byte for byte (``http.client``; httpx and
browsers would normalise ``..`` away before the app sees it). Users, tokens and the study are
committed once per module (the server is another process and cannot see a test's transaction)
and removed afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, _need
from tests.dicom_factory import SeriesSpec, write_study
from tests.processes import stop_process

STOW_MAX_BYTES = 4_000_000  # small, so the 413 test sends little; above Django's 2.5 MB form limit
ROLES = ("admin", "radiologist", "annotator", "researcher")
PASSWORD = "attack-table-pw-1"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class World:
    base: str
    port: int
    tokens: dict[str, str]
    usernames: dict[str, str]
    study_uid: str
    series_uid: str
    sop_uid: str
    orthanc_study: str
    orthanc_patient: str
    orthanc_instance: str
    files: list[Path] = field(default_factory=list)
    db_url: str = ""

    def raw(self, method: str, target: str, *, role: str | None = "annotator", headers: dict[str, str] | None = None,
            body: bytes | None = None) -> Answer:  # fmt: skip
        """Send ``target`` exactly as written (no normalisation, no re-encoding)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            all_headers = {"Host": f"127.0.0.1:{self.port}", "Accept-Encoding": "identity", **(headers or {})}
            if role:
                all_headers["Authorization"] = f"Token {self.tokens[role]}"
            if body is not None:
                all_headers["Content-Length"] = str(len(body))
            for name, value in all_headers.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            response = conn.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()


def _gunicorn(
    port: int, db_url: str, env: dict[str, str] | None = None, access_log: Path | None = None
) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "DJANGO_SETTINGS_MODULE": "webapp.settings.test",
        "SPINEREVIEW_STOW_MAX_BYTES": str(STOW_MAX_BYTES),
        # pixel data through the viewer nginx is fetched by nginx (X-Accel-Redirect); asked of
        # gunicorn directly (no X-SpineReview-Accel from nginx), the proxy still relays it
        "SPINEREVIEW_DICOMWEB_ACCEL": "/_orthanc",
        **(env or {}),
    }
    log_dir = Path(os.environ.get("SPINEREVIEW_SERVICES_DIR", ROOT / "var" / "services"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"gunicorn-security-{os.getpid()}.log").open("ab")
    access = ("--access-logfile", str(access_log)) if access_log else ()
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "webapp.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "1",
         "--threads", "4", "-k", "gthread", "--log-level", "warning", *access],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    stop_process(proc)


def upload(orthanc: httpx.Client, files: list[Path]) -> None:
    for f in files:
        orthanc.post("/instances", content=f.read_bytes()).raise_for_status()


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, orthanc_http, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """A running gunicorn, one user per role (token and password), and one stored study."""
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from scripts.services import free_port, wait_until
    from tests.factories import UserFactory

    _need("SPINEREVIEW_ORTHANC_URL")
    for study_id in orthanc_http.get("/studies").json():
        orthanc_http.delete(f"/studies/{study_id}")
    study_uid, files = write_study(
        tmp_path_factory.mktemp("attack-study"), protocol=(SeriesSpec("SAG T2 FSE", tr=3500, te=100, n=3),)
    )
    upload(orthanc_http, files)
    orthanc_study = orthanc_http.post("/tools/lookup", content=study_uid).json()[0]["ID"]
    series_uid = orthanc_http.get(f"/dicom-web/studies/{study_uid}/series").json()[0]["0020000E"]["Value"][0]
    instances = orthanc_http.get(f"/dicom-web/studies/{study_uid}/series/{series_uid}/instances").json()
    sop_uid = instances[0]["00080018"]["Value"][0]
    orthanc_instance = orthanc_http.post("/tools/lookup", content=sop_uid).json()[0]["ID"]
    orthanc_patient = orthanc_http.get(f"/studies/{orthanc_study}").json()["ParentPatient"]

    tag = uuid.uuid4().hex[:8]
    with django_db_blocker.unblock():
        users = {role: UserFactory(role=role, username=f"attack-{role}-{tag}") for role in ROLES}
        for user in users.values():
            user.set_password(PASSWORD)
            user.save()
        tokens = {role: Token.objects.create(user=user).key for role, user in users.items()}
        db = connection.settings_dict
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        db_url = f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    port = free_port()
    proc = _gunicorn(port, db_url)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(base + "/api/health/").status_code in (200, 503), 60, "gunicorn", proc)
        yield World(
            base=base, port=port, tokens=tokens, usernames={r: u.username for r, u in users.items()},
            study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid, orthanc_study=orthanc_study,
            orthanc_patient=orthanc_patient, orthanc_instance=orthanc_instance, files=files, db_url=db_url,
        )  # fmt: skip
    finally:
        _stop(proc)
        with django_db_blocker.unblock():
            for user in users.values():
                user.delete()


@pytest.fixture
def intact_orthanc(world: World, orthanc_http: httpx.Client) -> httpx.Client:
    """Orthanc holding the world's study whole before the test (an earlier failed attack may
    have deleted it); the test checks it is still whole afterwards."""
    if orthanc_http.get(f"/studies/{world.orthanc_study}").status_code != 200:
        upload(orthanc_http, world.files)
    return orthanc_http


@contextmanager
def _nginx_in_front(world: World, folder: Path) -> Iterator[World]:
    """The deployment's viewer nginx (ohif-extension/deploy/nginx.conf, as shipped, with only the
    listen address, the app's and Orthanc's addresses, Orthanc's credentials, the grant cache's
    folder and the document root filled in: ``tests/viewer_nginx.py``) in front of ``world``'s
    gunicorn and the test Orthanc. Skipped where no nginx binary is installed."""
    from scripts.services import free_port, wait_until
    from tests import viewer_nginx as shipped

    binary = shipped.nginx_binary()
    if binary is None:
        if os.environ.get("SPINEREVIEW_REQUIRE_SERVICES") == "1":
            pytest.fail("nginx is not installed although the test command installs it (scripts/setup.sh)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    port = free_port()
    orthanc_auth = (
        os.environ.get("SPINEREVIEW_ORTHANC_USERNAME", ""),
        os.environ.get("SPINEREVIEW_ORTHANC_PASSWORD", ""),
    )
    config = shipped.write_config(
        folder, port=port, app_port=world.port,
        orthanc_url=os.environ["SPINEREVIEW_ORTHANC_URL"], orthanc_auth=orthanc_auth,
    )  # fmt: skip
    proc = shipped.start(binary, config)
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/dicom-web/studies").status_code == 401, 30, "nginx", proc
        )
        yield World(**{**world.__dict__, "port": port, "base": f"http://127.0.0.1:{port}"})
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def viewer_nginx(world: World, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """The shipped viewer nginx in front of ``world``'s gunicorn (the app's default
    ``SPINEREVIEW_PIXEL_AUTH_TTL``) and the test Orthanc (``_nginx_in_front``)."""
    with _nginx_in_front(world, tmp_path_factory.mktemp("nginx")) as behind:
        yield behind


@contextmanager
def app_behind_nginx(world: World, folder: Path, env: dict[str, str]) -> Iterator[tuple[World, Path]]:
    """Another gunicorn on ``world``'s database, users and study, with ``env`` (e.g.
    ``SPINEREVIEW_PIXEL_AUTH_TTL``) and an access log (one line per request the app answered),
    behind its own shipped viewer nginx: (that nginx's World, the access log)."""
    from scripts.services import free_port, wait_until

    folder.mkdir(parents=True, exist_ok=True)
    access_log = folder / "app-access.log"
    port = free_port()
    proc = _gunicorn(port, world.db_url, env, access_log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(base + "/api/health/").status_code in (200, 503), 60, "gunicorn", proc)
        app = World(**{**world.__dict__, "port": port, "base": base})
        with _nginx_in_front(app, folder / "nginx") as behind:
            yield behind, access_log
    finally:
        _stop(proc)
