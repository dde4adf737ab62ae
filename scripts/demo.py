"""Run the demo: Orthanc + generated studies + the app on embedded defaults.

Steps (each idempotent): migrate SQLite; create one demo user per role with a password that is
generated once into ``var/demo-password`` (never in git); start Orthanc with storage in
``var/orthanc``; make sure the tiny drafting pipeline exists (trained once into
``$SPINEREVIEW_CACHE/pipelines``, file-locked, reused afterwards; ``--pipeline DIR`` uses yours)
and, beside it at low priority, generate the demo studies with ``python -m ml synth`` (cached in
``var/demo-data``; a quarter of the patients, two of the eight at seed 0, also get a study years
earlier, so the drafts' COMPARISON names a prior); import them; then run the Orthanc watcher and
Django's server until Ctrl-C.

Drafting in the demo runs in-process (SQLite, no Redis): the watcher turns each stable study
into a Study row, and drafts the studies of one pass together when the pass ends (fetch →
SpineFM → agents → draft + findings + SR in Orthanc; one batch for the writer). A deployment
runs the same code in Celery workers (docs/drafting.md).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("SPINEREVIEW_VAR_DIR", ROOT / "var"))
# a command prefix that runs a process only on cores nothing else wants (util-linux's chrt; else nice)
IDLE_PRIORITY = ["chrt", "--idle", "0"] if shutil.which("chrt") else ["nice", "-n", "19"]
DEMO_PRIOR_SHARE = "0.25"  # patients with an earlier study (seed 0: SPINE0001 unchanged, SPINE0002 progressed)


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _interrupt(signum, frame) -> None:  # type: ignore[no-untyped-def]
    raise KeyboardInterrupt


def demo_users_argv(password: str) -> list[str]:
    """``manage.py``'s arguments that create the demo users. The password goes in one piece
    (``--password=...``): a generated one starts with "-" one time in 64, and argparse reads
    ``--password -x...`` as a missing value followed by an option."""
    return ["create_demo_users", f"--password={password}"]


def make_demo_studies(py: str, studies: int, env: dict[str, str]) -> None:
    """The demo studies (and their priors) generated into ``var/demo-data`` once; at idle priority
    (``chrt --idle``), since on a first run this runs beside the pipeline's build and should take
    only the CPU it leaves."""
    from ml.data.manifest import read_manifest
    from ml.data.synthetic.priors import PRIOR_SUFFIX

    data = VAR / "demo-data"
    manifest = data / "manifest.jsonl"
    if manifest.exists() and not any(e.root.endswith(PRIOR_SUFFIX) for e in read_manifest(manifest)):
        manifest.unlink()  # made before the demo had priors: the same studies again, plus the priors
    if not manifest.exists():
        print(f"[demo] generating {studies} synthetic studies (and their priors) into {data}")
        subprocess.run(
            [*IDLE_PRIORITY, py, "-m", "ml", "synth", "--studies", str(studies), "--seed", "0", "--out", str(data),
             "--with-priors", DEMO_PRIOR_SHARE],
            cwd=ROOT, env=env, check=True,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=8, help="demo studies to generate (default 8)")
    parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--pipeline", help="drafting pipeline folder (default: the cached tiny pipeline)")
    args = parser.parse_args(argv)
    # SIGTERM (timeout, systemd, a terminal closing) must stop Orthanc and the children too
    signal.signal(signal.SIGTERM, _interrupt)

    from scripts.services import free_port, start_orthanc

    VAR.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    password_file = VAR / "demo-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(9))
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    orthanc_password_file = VAR / "orthanc-password"
    if not orthanc_password_file.exists():
        orthanc_password_file.write_text(secrets.token_urlsafe(16))
        orthanc_password_file.chmod(0o600)

    http_port = 8042 if port_is_free(8042) else free_port()
    dicom_port = 4242 if port_is_free(4242) else free_port()
    orthanc = start_orthanc(
        VAR / "orthanc", http_port=http_port, dicom_port=dicom_port,
        password=orthanc_password_file.read_text().strip(), stable_age=3,
    )  # fmt: skip
    os.environ.update(orthanc.env)
    if args.host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        # the demo answers loopback names only (webapp/settings/local.py); a named bind address too
        hosts = os.environ.get("SPINEREVIEW_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
        os.environ["SPINEREVIEW_ALLOWED_HOSTS"] = f"{hosts},{args.host}"
    env = dict(os.environ)
    try:
        subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run([py, "manage.py", *demo_users_argv(password)], cwd=ROOT, env=env, check=True)

        builder = None
        if args.pipeline:
            os.environ["SPINEREVIEW_PIPELINE_DIR"] = env["SPINEREVIEW_PIPELINE_DIR"] = str(
                Path(args.pipeline).resolve()
            )
        else:
            print(
                "[demo] drafting pipeline: the cached demo pipeline, built first if missing "
                "(about 18 min on 2 cores with AMX, longer without AVX-512; progress below)"
            )
            builder = subprocess.Popen(
                [py, "-c", "from reviewer.ml_bridge import ensure_tiny_pipeline as e; print(e(preset='demo'))"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        try:
            make_demo_studies(py, args.studies, env)
            if builder is not None:
                stdout, _ = builder.communicate()
                if builder.returncode:
                    raise subprocess.CalledProcessError(builder.returncode, builder.args)
                folder = stdout.strip().splitlines()[-1]
                os.environ["SPINEREVIEW_PIPELINE_DIR"] = env["SPINEREVIEW_PIPELINE_DIR"] = folder
        except BaseException:
            if builder is not None and builder.poll() is None:
                builder.kill()
            raise
        print(f"[demo] drafting pipeline: {env['SPINEREVIEW_PIPELINE_DIR']}")

        from ml.data.manifest import read_manifest

        data = VAR / "demo-data"
        # import the DICOM series only; ground_truth.json and report.txt stay beside them
        series_dirs = [str(data / s.path) for study in read_manifest(data / "manifest.jsonl") for s in study.series]
        subprocess.run([py, "manage.py", "import_dicom", "--quiet", *series_dirs], cwd=ROOT, env=env, check=True)

        watcher = subprocess.Popen([py, "manage.py", "watch_orthanc"], cwd=ROOT, env=env)
        url = f"http://{'localhost' if args.host in ('127.0.0.1', '0.0.0.0') else args.host}:{args.port}/"
        banner = (
            f"\n  SpineReview is running at {url}\n"
            f"  logins (password {password}): radiologist, annotator, researcher, admin\n"
            f"  API docs: {url}api/docs/   health: {url}api/health/\n"
            f"  Orthanc (loopback only): {orthanc.env['SPINEREVIEW_ORTHANC_URL']}"
            f"  DIMSE: AET SPINEREVIEW port {dicom_port}\n"
            "  Studies appear in the worklist a few seconds after Orthanc marks them stable; their drafts\n"
            "  (findings, key slices, boxes, and an SR in Orthanc) follow, several at a time. Ctrl-C stops.\n"
        )
        threading.Timer(3.0, lambda: print(banner, flush=True)).start()
        server = subprocess.Popen(
            [py, "manage.py", "runserver", "--noreload", f"{args.host}:{args.port}"], cwd=ROOT, env=env
        )
        try:
            return server.wait()
        except KeyboardInterrupt:
            server.send_signal(signal.SIGINT)
            return 0
        finally:
            watcher.terminate()
            server.terminate()
    finally:
        orthanc.stop()


if __name__ == "__main__":
    raise SystemExit(main())
