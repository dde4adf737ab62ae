"""Screenshots of the workflow pages in headless Chromium, for docs/images/workflow_*.png.

    .venv/bin/python scripts/screenshots_workflow.py [--out docs/images] [--reviews 400]

Builds a throw-away SQLite database (synthetic data only: ``benchmarks/stats_page.populate``,
a few studies in every worklist state, historical reports run through the real label
extractor), starts ``manage.py runserver`` on a free loopback port, logs each role in (Django
sessions handed to the browser as cookies) and drives /usr/bin/chromium with playwright-core
(from ``ohif-extension/node_modules``; scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PLAYWRIGHT = ROOT / "ohif-extension" / "node_modules" / "playwright-core"
CHROMIUM = "/usr/bin/chromium"

SHOTS = [  # (role, path, file, full page)
    ("admin", "/", "workflow_worklist.png", False),
    ("annotator", "/labels/", "workflow_annotation_queue.png", False),
    ("annotator", "LABEL_CONFIRM", "workflow_label_confirmation.png", False),
    ("researcher", "/statistics/", "workflow_statistics.png", True),
    ("radiologist", "/arbitration/", "workflow_arbitration.png", False),
]

NODE = r"""
const { chromium } = require(process.env.PLAYWRIGHT);
(async () => {
  const job = JSON.parse(process.env.SHOTS_JOB);
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
           '--disable-sync', '--no-first-run'] });
  try {
    for (const shot of job.shots) {
      const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
      await context.addCookies([{ name: 'sessionid', value: shot.session, url: job.base }]);
      const page = await context.newPage();
      const response = await page.goto(job.base + shot.path, { waitUntil: 'networkidle' });
      const status = response ? response.status() : 0;
      if (status !== 200) throw new Error(`${shot.path}: HTTP ${status}`);
      if (shot.hover) await page.hover(`tr[data-condition="${shot.hover}"]`);
      await page.screenshot({ path: shot.file, fullPage: shot.full });
      console.log(`wrote ${shot.file}`);
      await context.close();
    }
  } finally { await browser.close(); }
})().catch((e) => { console.error(e); process.exit(1); });
"""


def build_data(reviews: int) -> dict[str, str]:
    """Synthetic data; returns a session key per role and the label page to show."""
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.test import Client

    from benchmarks.stats_page import _report, populate
    from ml.conditions import CONDITION_KEYS
    from reviewer import selectors
    from reviewer.models import Assignment, DraftJob, Series, Study
    from reviewer.services import labels

    call_command("migrate", verbosity=0)
    made = populate(reviews, seed=11)
    import random

    rng = random.Random(3)
    states = [
        ("in_review", "", ""), ("draft_ready", "", "done"), ("drafting", "", "encoding"), ("drafting", "", "fetching"),
        ("draft_ready", "", "done"), ("awaiting_draft", "", "queued"),
        ("failed", "No T1- or T2-weighted series: cannot draft (classifier found DWI, localizer).", "failed"),
        ("drafting", "", "drafting"), ("in_review", "", ""), ("draft_ready", "", "done"),
    ]  # fmt: skip
    for i, (status, reason, job_state) in enumerate(states):
        study = Study.objects.create(
            study_uid=f"2.25.99{i}{rng.randrange(10**8)}", orthanc_id=f"shot-{i}", patient_id=f"SYN-{900 + i}",
            patient_name=f"SYNTHETIC^PATIENT{900 + i}", accession_number=f"ACC{7700 + i}",
            description=("MRI LUMBAR SPINE W/O", "MRI CERVICAL SPINE", "MRI THORACIC SPINE W/WO")[i % 3],
            study_date=f"2026-11-{22 - i // 3:02d}", status=status, status_reason=reason, modalities="MR",
            blinded=(i % 4 == 1),
        )  # fmt: skip
        for n, (desc, cls, sub, plane) in enumerate(
            [("SAG T1 FSE", "T1", "T1", "sagittal"), ("SAG T2 FSE", "T2", "T2", "sagittal"),
             ("SAG STIR", "T2", "STIR", "sagittal"), ("AX T2 FSE", "T2", "T2", "axial")][: 3 + i % 2]
        ):  # fmt: skip
            Series.objects.create(study=study, series_uid=f"{study.study_uid}.{n}", orthanc_id=f"shot-{i}-{n}",
                                  series_number=n + 1, description=desc, modality="MR", sequence_class=cls,
                                  sequence_subtype=sub, plane=plane, instance_count=15)  # fmt: skip
        if job_state:
            DraftJob.objects.create(study=study, pipeline_version="spinefm-agents@2", state=job_state, reason=reason)
        for reader in made["readers"][: (i % 3)]:
            Assignment.objects.create(study=study, reader=reader)
    # historical reports through the real extractor (evidence sentences to highlight)
    imported = []
    for i in range(40):
        truth = {k: int(rng.random() < 0.2) for k in CONDITION_KEYS}
        imported.append(labels.import_report(labels.ImportedReport(key=str(i), text=_report(truth, rng, i)))[0])
    shown = max(imported, key=lambda e: (len(e.evidence), -selectors.min_confidence(e.confidence)))
    sessions = {}
    for role in ("admin", "radiologist", "annotator", "researcher"):
        user, _ = User.objects.get_or_create(username=f"demo-{role}")
        if role == "admin":
            user.is_staff = user.is_superuser = True
            user.save()
        else:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        client = Client()
        client.force_login(user)
        sessions[role] = client.cookies["sessionid"].value
    sessions["label_page"] = f"/labels/{shown.pk}/"
    return sessions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--reviews", type=int, default=400)
    args = parser.parse_args()
    if not (PLAYWRIGHT / "package.json").exists():
        sys.exit(f"playwright-core not found at {PLAYWRIGHT}: run scripts/setup.sh")
    tmp = Path(tempfile.mkdtemp(prefix="spinereview-shots-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "SPINEREVIEW_EXPORT_SECRET": "screenshots-only",
        "SPINEREVIEW_VAR_DIR": str(tmp),
    }
    os.environ.update(env)
    sessions = build_data(args.reviews)
    from scripts.services import free_port, wait_until

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "server.log").open("wb"),
    )  # fmt: skip
    try:
        import httpx

        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/accounts/login/").status_code == 200, 60, "runserver")
        args.out.mkdir(parents=True, exist_ok=True)
        shots = []
        for role, path, name, full in SHOTS:
            path = sessions["label_page"] if path == "LABEL_CONFIRM" else path
            shot = {"session": sessions[role], "path": path, "file": str(args.out / name), "full": full}
            if name == "workflow_label_confirmation.png":
                shot["hover"] = "disc_herniation"
            shots.append(shot)
        job = {"base": f"http://127.0.0.1:{port}", "shots": shots}
        t0 = time.perf_counter()
        subprocess.run(
            ["node", "-e", NODE], check=True, cwd=ROOT,
            env={**env, "PLAYWRIGHT": str(PLAYWRIGHT), "CHROMIUM": CHROMIUM, "SHOTS_JOB": json.dumps(job)},
        )  # fmt: skip
        print(f"{len(shots)} screenshots in {time.perf_counter() - t0:.1f} s")
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
