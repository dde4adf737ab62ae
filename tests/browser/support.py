"""Shared by the browser tests and benchmarks/viewer_first_image.py: a generated study stored in
the real Orthanc and synced into the app, a draft for it, and the Node/Playwright runner.

The draft comes from the real drafting path (``reviewer.services.drafting.run_draft_job``) when
that is available, otherwise it is built from the generator's ground truth (same shapes: 17
findings with key slices and boxes) and the AI SR is written by ``reviewer.integrations.sr``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXTENSION_DIR = ROOT / "ohif-extension"
SERIES_FOR_REVIEW = ("sag_t2", "sag_t1", "sag_stir", "ax_t2")  # the 4 series of the hanging protocol
SIMILAR_REPORT = "IMPRESSION:\n1. Mild degenerative disc disease at L4-5 (similar-case fixture)."


def synth_study(out: Path, *, seed: int = 11, fast: bool = True) -> Path:
    """One generated lumbar study, fast (128x128) or with the realistic matrices the demo's
    studies have (``fast=False``); returns its folder (with ground_truth.json)."""
    if not (out / "manifest.jsonl").exists():
        subprocess.run(
            [sys.executable, "-m", "ml", "synth", "--studies", "1", "--seed", str(seed), "--out", str(out),
             *(["--fast"] if fast else [])],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    return next((out / "studies").iterdir())


def review_series_dirs(study_dir: Path) -> list[Path]:
    truth = json.loads((study_dir / "ground_truth.json").read_text())
    by_key = {s["key"]: study_dir / s["folder"] for s in truth["series"]}
    return [by_key[k] for k in SERIES_FOR_REVIEW if k in by_key]


def store_in_orthanc(study_dir: Path) -> str:
    """Store the 4 review series in Orthanc (no app rows yet); returns Orthanc's study id."""
    from reviewer.integrations.ingest import import_paths
    from reviewer.integrations.orthanc import orthanc

    client = orthanc()
    summary = import_paths(review_series_dirs(study_dir), client=client)
    failed = [r for r in summary.results if r.status == "rejected"]
    assert not failed, f"import failed: {failed[:3]}"
    truth = json.loads((study_dir / "ground_truth.json").read_text())
    return next(r["ID"] for r in client.post_tools_lookup(truth["study_uid"]) if r["Type"] == "Study")


def import_study(study_dir: Path):  # type: ignore[no-untyped-def]
    """Store the study in Orthanc and sync its Study/Series rows (as the watcher does)."""
    from reviewer.services.sync import sync_study

    return sync_study(orthanc_study_id=store_in_orthanc(study_dir))


def draft_from_truth(study, study_dir: Path):  # type: ignore[no-untyped-def]
    """A draft shaped like the drafting service's (17 findings, key slices, boxes) + its AI SR."""
    from ml.conditions import CONDITION_KEYS
    from reviewer.integrations.sr import write_ai_sr
    from tests.factories import DraftFactory, FindingFactory

    truth = json.loads((study_dir / "ground_truth.json").read_text())
    series_uid = {s["key"]: s["series_uid"] for s in truth["series"]}
    report = (study_dir / "report.txt").read_text()
    similar = [{"study_uid": "SYN-SIMILAR-1", "score": 0.87, "report": SIMILAR_REPORT}]  # retrieval's shape
    draft = DraftFactory(study=study, text=report, sections={}, analysis={"similar_cases": similar})
    by_condition: dict[str, dict] = {}
    for f in truth["findings"]:
        by_condition.setdefault(f["condition"], f)
    for key in CONDITION_KEYS:
        f = by_condition.get(key)
        present = truth["labels"].get(key) == 1
        key_slices, boxes = [], []
        if f and present:
            for series_key, slices in f.get("key_slices", {}).items():
                if series_key not in SERIES_FOR_REVIEW:
                    continue
                for k in slices[:2]:
                    ref = {"series_uid": series_uid[series_key], "sop_uid": k["sop_instance_uid"], "index": k["index"]}
                    key_slices.append(ref)
                    boxes.append({**ref, "xyxy": [float(v) for v in k["box"]], "xyxy_norm": k["box_norm"]})
        FindingFactory(
            draft=draft, condition=key, probability=0.9 if present else 0.05, present=present,
            level=(f or {}).get("level") or "", side=(f or {}).get("side") or "",
            key_slices=key_slices, boxes=boxes,
        )  # fmt: skip
    study.status = study.Status.DRAFT_READY
    study.save(update_fields=["status"])
    sr = write_ai_sr(draft=draft)
    return draft, sr


def tiny_pipeline_dir() -> str:
    """The cached tiny trained pipeline (trained on first use; SPINEREVIEW_TEST_PIPELINE_DIR overrides)."""
    if folder := os.environ.get("SPINEREVIEW_TEST_PIPELINE_DIR"):
        return folder
    from reviewer.ml_bridge import ensure_tiny_pipeline

    return ensure_tiny_pipeline()


def draft_with_pipeline(study, settings):  # type: ignore[no-untyped-def]
    """The real drafting path: the study's queued DraftJob run by the drafting service with the
    tiny trained pipeline (SpineFM + agents on CPU), which stores the draft, 17 findings and the AI SR."""
    from reviewer.models import DraftJob, StructuredReport
    from reviewer.services.drafting import run_draft_job

    settings.SPINEREVIEW_PIPELINE_DIR = tiny_pipeline_dir()
    job = run_draft_job(job_id=DraftJob.objects.filter(study=study).latest("queued_at").pk)
    assert job.state == DraftJob.State.DONE, job.reason
    draft = job.draft
    return draft, StructuredReport.objects.get(draft=draft, source=StructuredReport.Source.AI)


def node() -> str:
    exe = shutil.which("node")
    if not exe:
        raise RuntimeError("node not found: install Node.js (scripts/setup.sh expects it)")
    return exe


def chromium() -> str:
    exe = os.environ.get("SPINEREVIEW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        raise RuntimeError("chromium not found: apt-get install chromium (scripts/setup.sh does)")
    return exe


def run_node(
    script: Path, payload: dict, *, timeout: float = 240, on_phase: dict[str, Callable[[], object]] | None = None
) -> dict:
    """Run a Playwright script with ``payload`` as JSON on stdin; it prints one JSON line last.

    A line ``PHASE <name>`` runs ``on_phase[name]`` (the test acting while the browser waits).
    """
    env = {**os.environ, "NODE_PATH": str(EXTENSION_DIR / "node_modules"), "SPINEREVIEW_CHROMIUM": chromium()}
    proc = subprocess.Popen(
        [node(), str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env, cwd=EXTENSION_DIR,
    )  # fmt: skip
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    out_lines: list[str] = []
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(payload))
        proc.stdin.close()
        for line in proc.stdout:
            out_lines.append(line.rstrip("\n"))
            if line.startswith("PHASE ") and on_phase:
                on_phase[line.split(" ", 1)[1].strip()]()
        proc.wait()
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in out_lines if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(out_lines)[-6000:]
        raise AssertionError(f"{script.name} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def bundle_extension_module(source: str, out: Path, name: str) -> Path:
    """One module of the extension (``src/...ts``) bundled by the extension's esbuild into an ES
    module node can import, for tests that run the viewer's logic outside the browser. A missing
    ``node_modules`` fails under the test command and skips elsewhere."""
    import pytest

    esbuild = EXTENSION_DIR / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        if os.environ.get("SPINEREVIEW_REQUIRE_SERVICES") == "1":
            pytest.fail("ohif-extension/node_modules missing: run scripts/setup.sh")
        pytest.skip("ohif-extension/node_modules missing: run scripts/setup.sh")
    target = out / name
    proc = subprocess.run(
        [str(esbuild), source, "--bundle", "--format=esm", f"--outfile={target}"],
        cwd=EXTENSION_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return target
