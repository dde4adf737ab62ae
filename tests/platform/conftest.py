"""Fixtures for the drafting tests (and any platform test that runs a real Celery worker).

``tiny_pipeline`` trains the tiny pipeline once into $SPINEREVIEW_CACHE (file-locked, reused
on every later run) so that workers never train inside a task; ``celery_worker_process``
starts real workers with that pipeline and optional extra environment (another Orthanc, a short
broker visibility timeout for the worker-loss test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, _need
from tests.processes import stop_process


@pytest.fixture(scope="session")
def tiny_pipeline() -> Path:
    """The cached tiny trained pipeline folder (built on first use, <= a few minutes on CPU);
    SPINEREVIEW_TEST_PIPELINE_DIR runs the drafting tests on another pipeline folder instead."""
    if folder := os.environ.get("SPINEREVIEW_TEST_PIPELINE_DIR"):
        return Path(folder)
    from reviewer.ml_bridge import ensure_tiny_pipeline

    return Path(ensure_tiny_pipeline())


@pytest.fixture
def celery_worker_process(transactional_db, settings, tiny_pipeline) -> Iterator[Callable[..., subprocess.Popen]]:  # type: ignore[no-untyped-def]
    """Start a real Celery worker (separate process, solo pool, queues gpu + default) on the test
    database and Redis. ``start(env={...})`` overrides its environment (e.g. another Orthanc)."""
    from django.db import connection

    broker = _need("CELERY_BROKER_URL")
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    procs: list[subprocess.Popen] = []
    log_dir = Path(os.environ.get("SPINEREVIEW_SERVICES_DIR", ROOT / "var" / "services"))
    log_dir.mkdir(parents=True, exist_ok=True)
    settings.SPINEREVIEW_PIPELINE_DIR = str(tiny_pipeline)
    # messages other tests published (jobs of their rolled-back databases) must not reach this
    # test's workers: each worker test starts from empty queues
    from webapp.celery import app

    with app.connection_for_write() as conn:
        for queue in {"gpu", "default", app.conf.task_default_queue}:
            conn.default_channel.queue_purge(queue)

    def start(env: dict[str, str] | None = None) -> subprocess.Popen:
        full_env = {
            **os.environ,
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": broker,
            "DJANGO_SETTINGS_MODULE": "webapp.settings.test",
            "SPINEREVIEW_PIPELINE_DIR": str(tiny_pipeline),
            "SPINEREVIEW_DRAFT_RETRY_BACKOFF_S": "1",
            **(env or {}),
        }
        log = (log_dir / f"celery-worker-{os.getpid()}-{len(procs)}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", "gpu,default", "-P", "solo",
             "-c", "1", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO",
             "-n", f"test{len(procs)}-{os.getpid()}@%h"],
            cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        proc.log_path = log.name  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            stop_process(proc)


@pytest.fixture(scope="session")
def synth_study(tmp_path_factory) -> dict:  # type: ignore[no-untyped-def]
    """Generated spine studies (fast preset, enriched findings); the first one's uid, files,
    folder and manifest entry, and all three under "studies" (for the batching test)."""
    from ml.data.manifest import read_manifest

    out = tmp_path_factory.mktemp("synth")
    subprocess.run(
        [sys.executable, "-m", "ml", "synth", "--studies", "3", "--seed", "5", "--out", str(out), "--fast",
         "--prevalence", "enriched"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    studies = []
    for entry in read_manifest(out / "manifest.jsonl"):
        files = sorted(p for s in entry.series for p in (out / s.path).glob("*.dcm"))
        studies.append({"study_uid": entry.study_uid, "files": files, "dir": out, "entry": entry})
    return {**studies[0], "studies": studies}


@pytest.fixture
def storescu() -> Callable[..., subprocess.CompletedProcess]:
    """Send files to Orthanc by DIMSE C-STORE (dcmtk), as a modality would."""

    def send(files, port: int | str | None = None) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        port = str(port or os.environ["SPINEREVIEW_ORTHANC_DICOM_PORT"])
        cmd = ["storescu", "-aet", "MODALITY1", "-aec", "SPINEREVIEW", "127.0.0.1", port, *map(str, files)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result

    return send


@pytest.fixture
def wait_stable() -> Callable[..., str]:
    """Wait until Orthanc reports a study stable; returns its Orthanc id."""
    from tests.conftest import wait_for

    def wait(client, study_uid: str, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
        def stable():  # type: ignore[no-untyped-def]
            found = client.post("/tools/lookup", content=study_uid).json()
            if not found:
                return None
            return found[0]["ID"] if client.get(f"/studies/{found[0]['ID']}").json().get("IsStable") else None

        return wait_for(stable, timeout=timeout, what="stable study")  # type: ignore[return-value]

    return wait


@pytest.fixture
def pipeline_settings(settings, orthanc_settings, tiny_pipeline):  # type: ignore[no-untyped-def]
    """The app pointed at the test Orthanc and drafting with the cached tiny pipeline."""
    settings.SPINEREVIEW_PIPELINE_DIR = str(tiny_pipeline)
    return settings


@pytest.fixture
def statistics_on_postgres(settings):  # type: ignore[no-untyped-def]
    """The statistics rows and their aggregation are PostgreSQL's (SQLite keeps the plain path):
    skip elsewhere; an export secret and an empty cache, so each test computes its own figures."""
    from django.core.cache import cache
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the statistics rows and their aggregation are PostgreSQL's")
    settings.SPINEREVIEW_EXPORT_SECRET = "test-secret"
    cache.clear()
