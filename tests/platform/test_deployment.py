"""docker-compose.yml cannot run here (no Docker engine); check its structure instead."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_deployment_has_every_part():
    assert set(SERVICES) >= {"postgres", "redis", "orthanc", "web", "worker", "worker-gpu", "viewer", "watcher"}


def test_every_image_is_pinned():
    for name, svc in SERVICES.items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert re.match(r"^\d+(\.\d+)+", tag), f"{name}: image {image!r} is not pinned to a version"


def test_the_gpu_worker_reserves_a_gpu_and_serves_only_the_gpu_queue_with_one_process():
    gpu = SERVICES["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    cmd = " ".join(gpu["command"])
    assert "-Q gpu" in cmd
    assert "--pool solo" in cmd
    assert "--concurrency 1" in cmd
    assert "-Q default" in " ".join(SERVICES["worker"]["command"])


def test_orthanc_runs_dicomweb_and_the_postgresql_index():
    mounts = " ".join(SERVICES["orthanc"]["volumes"])
    assert "orthanc.deploy.json" in mounts
    config = json.loads((ROOT / "orthanc" / "orthanc.deploy.json").read_text())
    assert config["DicomWeb"]["Enable"] is True
    assert config["PostgreSQL"]["EnableIndex"] is True
    assert config["AuthenticationEnabled"] is True
    assert "8042" not in str(SERVICES["orthanc"].get("ports", [])), "Orthanc HTTP must not be published"


def test_no_secret_is_written_into_the_compose_file():
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.finditer(r"^\s*\w*(PASSWORD|SECRET_KEY)\s*:\s*(\S+)", text, flags=re.MULTILINE):
        assert match.group(2).startswith("${"), f"literal secret in compose: {match.group(0)}"


def test_pyproject_pins_the_libraries_the_code_uses():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = " ".join(project["dependencies"] + project["optional-dependencies"]["ml"]).lower()
    for name in ("django", "djangorestframework", "pydicom", "dicomweb-client", "pyorthanc", "torch",
                 "transformers", "peft", "timm", "celery", "psycopg", "highdicom", "drf-spectacular"):  # fmt: skip
        assert re.search(rf"(^|[\s\"']){re.escape(name)}(\[[^\]]*\])?[<>=~]", deps), f"{name} missing or unpinned"
    assert "orthanc-rest-client" not in deps


def _has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="docker compose plugin not installed on this machine")
def test_docker_compose_config_accepts_the_file(tmp_path):  # type: ignore[no-untyped-def]
    env = tmp_path / ".env"
    env.write_text("POSTGRES_PASSWORD=x\nORTHANC_PASSWORD=y\nSPINEREVIEW_SECRET_KEY=z\n")
    result = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(env), "config", "-q"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_every_beat_schedule_entry_names_a_registered_task_and_compose_runs_beat() -> None:
    from django.conf import settings

    from webapp.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "beat" in services["beat"]["command"]
