"""The demo's first run, timed: ``scripts/demo`` from an empty project cache and an empty var/
until every demo draft is done, as a new user meets it (the venv and Debian packages are taken
as installed; everything else, OHIF, the extension build, gemma's conversion, the pipeline, the
studies, is made from nothing).

    .venv/bin/python benchmarks/demo_first_run.py [--drafts 10] [--port 8131] [--cache DIR] [--repo DIR]

Prints the seconds to the app's banner, to the last draft, the pipeline's steps
(``bootstrap.json`` / ``train_times.json``) and the load average before and after. Run it on an
idle machine: on 2 shared cores the figure is the load as much as the work.

``--cache DIR`` runs with that project cache instead of an empty one (e.g. ``.cache``, where the
demo pipeline and Gemma's conversion already are): what is left is the demo's studies, the app
and the drafts. ``--repo DIR`` runs another checkout's ``scripts/demo`` (a baseline, e.g. ``git
worktree add /tmp/base <commit>`` with this checkout's ``.venv`` linked in).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def drafts_done(db: Path) -> int:
    """Draft jobs in state done (0 before the database exists)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return int(con.execute("select count(*) from reviewer_draftjob where state = 'done'").fetchone()[0])
    except sqlite3.Error:
        return 0


def left_running(work: Path) -> list[int]:
    """Processes whose command line names ``work`` (the demo's Orthanc reads its config there)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if str(work).encode() in (d / "cmdline").read_bytes():
                out.append(int(d.name))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drafts", type=int, default=10, help="drafts to wait for (8 demo studies + 2 priors)")
    ap.add_argument("--port", type=int, default=8131)
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--cache", type=Path, default=None, help="an existing project cache (default: a new, empty one)")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose scripts/demo runs (default: this one)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="demo-first-run-"))
    cache = args.cache.resolve() if args.cache else work / "cache"
    env = {**os.environ, "SPINEREVIEW_CACHE": str(cache), "SPINEREVIEW_VAR_DIR": str(work / "var")}
    load0 = os.getloadavg()[0]
    t0, started = time.perf_counter(), time.time()
    log = (work / "demo.log").open("w")
    repo = args.repo.resolve()
    proc = subprocess.Popen([str(repo / "scripts" / "demo"), "--port", str(args.port)], cwd=repo, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    up = None
    db = work / "var" / "spinereview.sqlite3"
    try:
        while time.perf_counter() - t0 < args.timeout:
            if proc.poll() is not None:
                print(f"scripts/demo exited with {proc.returncode}; log: {work / 'demo.log'}")
                return 1
            if up is None and "SpineReview is running" in (work / "demo.log").read_text(errors="replace"):
                up = time.perf_counter() - t0
            if drafts_done(db) >= args.drafts:
                break
            time.sleep(2)
        else:
            print(f"timed out after {args.timeout:.0f} s; log: {work / 'demo.log'}")
            return 1
        total = time.perf_counter() - t0
    finally:
        # SIGTERM, which the demo handles as Ctrl-C (it stops its Orthanc). Not SIGINT: a process
        # started in the background by a shell has SIGINT ignored, and so has everything it starts
        # (this benchmark run with `&` left the demo and its Orthanc running after a SIGINT)
        with contextlib.suppress(ProcessLookupError):  # the demo may have stopped by itself (an error)
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            print("scripts/demo did not stop within 120 s of SIGTERM; killed")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        leftover = left_running(work)
        if leftover:  # the demo's services run in their own sessions: a killed demo leaves them
            print(f"scripts/demo left {len(leftover)} process(es) of its folder running; stopped: {leftover}")
            for pid in leftover:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
    # the pipeline's steps where this run built it (a --cache folder may hold one built before)
    pipes = [p for p in sorted((cache / "pipelines").glob("demo-*/bootstrap.json")) if p.stat().st_mtime >= started]
    steps = json.loads(pipes[0].read_text())["seconds"] if pipes else {}
    agents = json.loads((pipes[0].parent / "train_times.json").read_text()) if pipes else {}
    print(f"app up after {up or float('nan'):.0f} s; {args.drafts} drafts done after {total:.0f} s "
          f"({total / 60:.1f} min); the drafts took {total - (up or 0):.0f} s")  # fmt: skip
    print("pipeline steps (s): " + ", ".join(f"{k} {v:.0f}" for k, v in {**steps, **agents}.items()))
    writer = pipes[0].parent / "report" / "meta.json" if pipes else None
    if writer is not None and writer.exists():  # the writer's own stages (vocabulary, stage 1, stage 2)
        stages = json.loads(writer.read_text()).get("seconds", {})
        print("report writer (s): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    print(f"load average (1 min): {load0:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs")
    print(f"work folder (delete when done): {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
