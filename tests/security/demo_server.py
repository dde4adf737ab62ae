"""The demo's web server for the security tests: ``manage.py runserver`` under the demo settings
(``webapp.settings.local``) in its own process, on a fresh SQLite database in a temporary var/
folder, with its request log captured to a file. Nothing in the caller's environment that would
change the demo's defaults (DEBUG, allowed hosts, database, cache) is passed on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT
from tests.processes import stop_process

_DROPPED = ("SPINEREVIEW_DEBUG", "SPINEREVIEW_ALLOWED_HOSTS", "DATABASE_URL", "SPINEREVIEW_CACHE_URL",
            "SPINEREVIEW_VIEWER_ORIGIN", "SPINEREVIEW_APP_ORIGIN", "DJANGO_SETTINGS_MODULE")  # fmt: skip


@dataclass
class DemoServer:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_host(self) -> str:
        return f"localhost:{self.port}"

    @property
    def viewer_host(self) -> str:
        return f"viewer.localhost:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def demo_server(var_dir: Path, *, setup: str = "") -> Iterator[DemoServer]:
    """Migrate, run ``setup`` (Python, after ``django.setup()``), then serve until the block ends."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(
        DJANGO_SETTINGS_MODULE="webapp.settings.local",
        SPINEREVIEW_VAR_DIR=str(var_dir),
        SPINEREVIEW_VIEWER_ORIGIN=f"http://viewer.localhost:{port}",
        SPINEREVIEW_APP_ORIGIN=f"http://localhost:{port}",
        PYTHONUNBUFFERED="1",
    )
    var_dir.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    if setup:
        subprocess.run([py, "-c", f"import django; django.setup()\n{setup}"], cwd=ROOT, env=env, check=True,
                       timeout=120)  # fmt: skip
    log = var_dir / "runserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([py, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"demo server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield DemoServer(port=port, log=log)
    finally:
        stop_process(proc)
