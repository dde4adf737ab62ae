"""Start and stop the real services SpineReview needs, on loopback, with project-local data.

Used by the test command (``scripts/test``) and the demo (``scripts/demo``)::

    python -m scripts.services run -- pytest        # PostgreSQL + Redis + Orthanc around a command
    python -m scripts.services run --only orthanc -- python manage.py runserver

Each service gets a free port, its own folder, a log file, and is stopped (process group) when
the command ends, whatever happens. Nothing is installed system-wide and nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ORTHANC_BASE_CONFIG = ROOT / "orthanc" / "orthanc.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


@dataclass
class Service:
    name: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)  # what clients need to reach it
    proc: subprocess.Popen | None = None
    stop_cmd: list[str] | None = None
    data_dir: Path | None = None  # thrown away by close() (a PostgreSQL cluster outside workdir)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def spawn(self, cmd: list[str], **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        return self.proc

    def stop(self) -> None:
        if self.stop_cmd:
            subprocess.run(self.stop_cmd, capture_output=True, timeout=60)
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def close(self) -> None:
        """Stop the service and delete its data outside ``workdir`` (a 100,000-review benchmark
        cluster is 2 GB)."""
        self.stop()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])
    if path := shutil.which(name):
        return path
    raise FileNotFoundError(f"PostgreSQL's {name} not found: apt-get install postgresql")


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the 'postgres' user the Debian package made."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres(workdir: Path, port: int | None = None) -> Service:
    port = port or free_port()
    # root-owned project folders may be unreadable for 'postgres': keep the cluster in /tmp
    data_root = Path(tempfile.mkdtemp(prefix="spinereview-pg-"))
    data, sock = data_root / "data", data_root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data_root, "postgres")
        shutil.chown(sock, "postgres")
    svc = Service("postgres", workdir)
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "spinereview", "-A", "trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    # durability off: a test cluster is thrown away, and fsync dominates test time on small disks
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    subprocess.run(
        _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data_root / "pg.log"), "-w", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    svc.stop_cmd = _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
    subprocess.run(
        _as_postgres([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "spinereview", "spinereview"]),
        check=True, capture_output=True,
    )  # fmt: skip
    svc.env = {"DATABASE_URL": f"postgres://spinereview@127.0.0.1:{port}/spinereview"}
    svc.data_dir = data_root
    return svc


def start_redis(workdir: Path, port: int | None = None) -> Service:
    port = port or free_port()
    svc = Service("redis", workdir)
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = svc.spawn([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    wait_until(ready, 20, "redis", proc)
    svc.env = {"CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    return svc


def render_orthanc_config(workdir: Path, http_port: int, dicom_port: int, password: str, stable_age: int) -> Path:
    config = json.loads(ORTHANC_BASE_CONFIG.read_text())
    config.update(
        HttpPort=http_port,
        DicomPort=dicom_port,
        StorageDirectory=str(workdir / "storage"),
        IndexDirectory=str(workdir / "storage"),
        RegisteredUsers={"spinereview": password},
        StableAge=stable_age,
    )
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def start_orthanc(
    workdir: Path, *, http_port: int | None = None, dicom_port: int | None = None,
    password: str | None = None, stable_age: int = 2,
) -> Service:  # fmt: skip
    """Start Orthanc with storage under ``workdir``. Re-using a workdir keeps its data, so a
    test can stop Orthanc and start it again on the same ports and archive."""
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = http_port or free_port(), dicom_port or free_port()
    password = password or secrets.token_urlsafe(16)
    config = render_orthanc_config(workdir, http_port, dicom_port, password, stable_age)
    svc = Service("orthanc", workdir)
    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    proc = svc.spawn([exe, str(config)], cwd=workdir)
    url = f"http://127.0.0.1:{http_port}"
    wait_until(
        lambda: httpx.get(url + "/system", auth=("spinereview", password)).status_code == 200,
        60,
        "orthanc",
        proc,
    )
    svc.env = {
        "SPINEREVIEW_ORTHANC_URL": url,
        "SPINEREVIEW_ORTHANC_USERNAME": "spinereview",
        "SPINEREVIEW_ORTHANC_PASSWORD": password,
        "SPINEREVIEW_ORTHANC_DICOM_PORT": str(dicom_port),
        "SPINEREVIEW_ORTHANC_AET": "SPINEREVIEW",
    }
    return svc


@contextlib.contextmanager
def running(names: list[str], workdir: Path) -> Iterator[dict[str, str]]:
    """Start the named services; yield the environment that points clients at them."""
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[Service] = []
    env: dict[str, str] = {}
    try:
        for name in names:
            t0 = time.perf_counter()
            if name == "postgres":
                svc = start_postgres(workdir)
            elif name == "redis":
                svc = start_redis(workdir)
            elif name == "orthanc":
                svc = start_orthanc(workdir / "orthanc")
            else:
                raise ValueError(f"unknown service {name!r}")
            started.append(svc)
            env.update(svc.env)
            print(f"[services] {name} up in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        yield env
    finally:
        for svc in reversed(started):
            svc.close()
        if started:
            print(f"[services] stopped {', '.join(s.name for s in started)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.services", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start services, run a command with their environment, stop them")
    run.add_argument("--only", default="postgres,redis,orthanc", help="comma-separated services")
    run.add_argument("--workdir", default=str(ROOT / "var" / "services"))
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    workdir = Path(args.workdir).resolve()  # Orthanc is started from another cwd
    shutil.rmtree(workdir, ignore_errors=True)  # fresh archive and logs every run
    with running([s for s in args.only.split(",") if s], workdir) as env:
        proc = subprocess.Popen(command, env={**os.environ, **env, "SPINEREVIEW_SERVICES_DIR": str(workdir)})
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
