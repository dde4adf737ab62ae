"""Time to first image in the viewer: a 4-series generated study (sag T2/T1/STIR, ax T2) opened in
our spine mode in headless Chromium, against the real app (runserver) and the real Orthanc.

    python -m scripts.services run -- python benchmarks/viewer_first_image.py [--runs 3] [--waterfall]
        [--trace [FILE]] [--baseline DIR] [--demo-matrices]

``--trace [FILE]`` records a Chromium performance trace of the first cold load (the first warm
one with ``--trace-load warm``; kept in FILE if given) and prints where each thread's time went
between navigation start and the first image: busy time per thread (the page's main thread, its
workers, the GPU process that runs WebGL in software without a GPU), the main thread's largest
kinds of work (script evaluation, compilation, rendering, GC) and its functions with the most
self time in V8's CPU profile, before and after the first frame is asked for (the profiler slows
the traced load).

``--demo-matrices`` opens a study with the realistic matrices of the demo's studies (what
``scripts/demo`` imports) instead of the fast 128x128 one.

Each run uses a fresh browser context (cold HTTP cache, so OHIF's bundles are fetched again) and
reports, in ms from navigation start: the first image (``first_image_ms``: when the page drew it,
our mode's ``spinereview:first-image`` mark, set in the task that drew, counted only when a canvas
shows image pixels at that moment, probed in the same task, and the probe from outside then sees
them too), when the probe from outside saw them (``pixels_seen_ms``), all four canvases showing
them, the findings panel filled, and the first frame asked for (the time after it is the
browser's: decoding and drawing). Why two figures for the first image: the probe polls from
outside and runs on the page's main thread, so it cannot look while the page does the work that
follows the image (rendering the other viewports, the AI boxes); it times some of that work too,
where a reader sees the image as soon as its frame is presented. A warm run (same context,
reload) follows, and a hot one after it (the third load: Chromium keeps V8's compiled code of a
script run twice, so this is every study of a reading session from the third on). Between the
first and the second load the benchmark reads the first study as a reader would: it waits for
the viewer's background warm-up (a hidden frame that runs the viewer once more so that the next
study starts from compiled code, ``ohif-extension/src/warmup.ts``) to end; ``--no-reading`` opens
the second study at once, before the warm-up starts. Runs after
`scripts/setup.sh` (OHIF dist, extension build, playwright-core). A baseline checkout without
the mark has no ``first_image_ms``; compare ``pixels_seen_ms`` there.

``--baseline DIR`` serves another checkout of the app (e.g. ``git worktree add /tmp/old main``,
its extension built) the same way, on the same database and Orthanc, and measures both in turn,
one run each, so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the browser side: one cold, warm and hot load per run, in headless Chromium (playwright-core)
NODE_SCRIPT = ROOT / "benchmarks" / "viewer_first_image.cjs"


def prepare(out: Path, fast: bool = True) -> tuple[str, str]:
    """Migrate, make a reader, store a generated 4-series study with a draft; (study_uid, user)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.test")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from tests.browser import support
    from tests.factories import UserFactory

    if not get_user_model().objects.filter(username="bench-reader").exists():
        UserFactory(role="radiologist", username="bench-reader")
    study_dir = support.synth_study(out, seed=21, fast=fast)
    study = support.import_study(study_dir)
    if not study.drafts.exists():
        support.draft_from_truth(study, study_dir)
    return study.study_uid, "bench-reader"


def print_waterfall(run: dict) -> None:
    """Every request of one cold and one warm load: start, first byte and end (ms from navigation
    start), bytes on the wire and decoded; where the time before the first image goes."""
    for kind in ("cold", "warm"):
        print(f"{kind}: first image at {run[kind]['first_image_ms']} ms")
        print("   start    ttfb     end   wire kB  body kB  type        url")
        for r in run[kind]["waterfall"]:
            wire, _encoded, decoded = r["sizes"] or (-1, -1, -1)
            ttfb = r["start"] + r["ttfb"] if r["ttfb"] >= 0 else -1
            end = r["start"] + r["end"] if r["end"] >= 0 else -1
            print(f"  {r['start']:6.0f}  {ttfb:6.0f}  {end:6.0f}  {wire / 1e3:8.1f} {decoded / 1e3:8.1f}  "
                  f"{r['type'][:10]:10s}  {'FAILED ' if r['failed'] else ''}{r['url']}")  # fmt: skip


MAIN_KINDS = {  # trace event names on the page's main thread -> a kind of work
    "EvaluateScript": "evaluate script", "v8.compile": "compile", "v8.compileModule": "compile",
    "V8.CompileCode": "compile", "v8.parseOnBackground": "compile", "FunctionCall": "JS: callbacks and tasks",
    "TimerFire": "JS: timers", "FireAnimationFrame": "JS: animation frames", "EventDispatch": "JS: events",
    "v8.run": "JS: run microtasks", "RunMicrotasks": "JS: run microtasks", "ParseHTML": "parse HTML",
    "ParseAuthorStyleSheet": "style", "UpdateLayoutTree": "style", "Layout": "layout", "Paint": "paint",
    "MajorGC": "garbage collection", "MinorGC": "garbage collection", "V8.GCScavenger": "garbage collection",
    "V8.GCFinalizeMC": "garbage collection", "GPUTask": "GPU task",
}  # fmt: skip


def print_trace(path: Path, first_image_ms: float, load: str = "cold") -> None:
    """Busy time per thread and the page main thread's kinds of work, navigation start -> first image.

    Busy time is the sum of each thread's top-level tasks (``RunTask``, ``ThreadControllerImpl::
    RunTask``) in the window; a kind's time is the sum of its outermost events (an event inside
    another of the same kind is not counted twice)."""
    events = json.loads(path.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    names: dict[tuple[int, int], str] = {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            names[(e["pid"], e["tid"])] = e["args"]["name"]
    nav = [e for e in events if e.get("name") == "navigationStart" and "frame" in str(e.get("args", {}))]
    if not nav:
        print("trace: no navigationStart mark; nothing to summarise")
        return
    t0 = max(e["ts"] for e in nav)  # the study page's navigation (the login page's comes first)
    t1 = t0 + first_image_ms * 1000
    main = next((e["pid"], e["tid"]) for e in nav if e["ts"] == t0)
    busy: dict[str, float] = {}
    kinds: dict[str, float] = {}
    open_until: dict[str, float] = {}
    for e in sorted((e for e in events if e.get("ph") == "X" and "dur" in e), key=lambda e: e["ts"]):
        a, b = max(e["ts"], t0), min(e["ts"] + e["dur"], t1)
        if b <= a:
            continue
        key = (e["pid"], e["tid"])
        thread = names.get(key, f"thread {e['tid']}")
        if e["name"] in ("RunTask", "ThreadControllerImpl::RunTask", "ThreadPool_RunTask"):
            label = "page main thread" if key == main else f"{thread} (pid {e['pid']})"
            if a >= open_until.get(label, 0):  # outermost task only
                busy[label] = busy.get(label, 0) + (b - a)
                open_until[label] = b
        kind = MAIN_KINDS.get(e["name"])
        if key == main and kind and a >= open_until.get(kind, 0):
            kinds[kind] = kinds.get(kind, 0) + (b - a)
            open_until[kind] = b
    print(f"trace of the first {load} load: navigation start -> first image ({first_image_ms:.0f} ms)")
    frames = [e["ts"] for e in events if e.get("name") == "ResourceSendRequest" and "/frames/" in str(e.get("args"))]
    for label, lo, hi in (("before the first frame is asked for", t0, min(frames, default=t1)),
                          ("first frame asked -> first image", min(frames, default=t1), t1)):  # fmt: skip
        top, n = profile_self_time(events, main, lo, hi)
        if n:
            print(f"  the page's main thread, {label}: largest self time (% of {n} CPU-profile samples)")
            for name, count in top:
                print(f"    {100 * count / n:5.1f} %  {name}")
    print("  busy time per thread (top-level tasks):")
    for label, us in sorted(busy.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {us / 1000:7.0f} ms  {label}")
    print("  the page's main thread by kind (outermost events):")
    for kind, us in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"    {us / 1000:7.0f} ms  {kind}")


def profile_self_time(events: list[dict], main: tuple[int, int], lo: float, hi: float, top: int = 6):
    """V8 CPU-profile samples of the thread ``main`` between trace times lo and hi: the functions
    with the most self time [(name, samples)] and the number of samples (idle and GC excluded)."""
    starts = {e["id"]: e["args"]["data"]["startTime"] for e in events
              if e.get("name") == "Profile" and (e["pid"], e["tid"]) == main}  # fmt: skip
    names: dict[tuple, str] = {}
    clock = dict(starts)
    counts: dict[str, int] = {}
    for e in events:
        if e.get("name") != "ProfileChunk" or e.get("id") not in starts:
            continue
        data = e["args"]["data"]
        for node in data.get("cpuProfile", {}).get("nodes", []) or []:
            frame = node["callFrame"]
            names[(e["id"], node["id"])] = frame.get("functionName") or "(anonymous)"
        samples = data.get("cpuProfile", {}).get("samples", [])
        for sample, delta in zip(samples, data.get("timeDeltas", []), strict=False):
            clock[e["id"]] += delta
            name = names.get((e["id"], sample), "?")
            if lo <= clock[e["id"]] <= hi and name not in ("(idle)", "(program)", "(garbage collector)", "(root)"):
                counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:top], sum(counts.values())


def runserver(tree: Path, port: int, log: Path) -> subprocess.Popen:
    """``manage.py runserver`` of ``tree`` on ``port``, once it answers."""
    import httpx

    viewer = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SPINEREVIEW_VIEWER_ORIGIN": viewer, "DJANGO_SETTINGS_MODULE": "webapp.settings.test"}
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"],
        cwd=tree, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{viewer}/app-config.js", timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    return server


def summary(results: list[dict]) -> list[str]:
    def line(kind: str, key: str) -> str:
        values = [r[kind][key] for r in results if r[kind][key] is not None]
        if len(values) < len(results):
            return f"{key}: not reached in {len(results) - len(values)} of {len(results)} runs"
        return f"{key}: median {statistics.median(values):.0f} ms (min {min(values):.0f}, max {max(values):.0f})"

    keys = ("first_image_ms", "pixels_seen_ms", "all_four_ms", "panel_ms", "first_frame_asked_ms")
    kinds = [k for k in ("cold", "warm", "hot") if all(k in r for r in results)]
    lines = [f"  {kind:4s} " + "; ".join(line(kind, k) for k in keys) for kind in kinds]
    warmups = [r["cold"]["warmup"] for r in results if "warmup" in r["cold"]]
    if warmups:
        states = sorted({w["state"] for w in warmups})
        counts = ", ".join(f"{sum(w['state'] == st for w in warmups)} {st}" for st in states)
        frame = [w["ms"] for w in warmups if w.get("ms") is not None]
        took = f"; the hidden frame took median {statistics.median(frame):.0f} ms" if frame else ""
        waited = statistics.median(w["waited_ms"] for w in warmups)
        lines.append(f"  between the first and second study: warm-up {counts}{took}; waited median {waited:.0f} ms")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--waterfall", action="store_true", help="also print every request of the first run")
    parser.add_argument("--baseline", type=Path, help="another checkout of the app, measured in turn with this one")
    parser.add_argument("--trace", nargs="?", const="", default=None, metavar="FILE",
                        help="trace the first cold load, print where time went; keep the trace in FILE")  # fmt: skip
    parser.add_argument("--trace-load", choices=("cold", "warm"), default="cold", help="which load --trace records")
    parser.add_argument("--no-reading", action="store_true",
                        help="open the second study right after the first one's images, without waiting for the "
                             "viewer's background warm-up (a reader who reads nothing)")  # fmt: skip
    parser.add_argument("--demo-matrices", action="store_true", help="the demo's realistic matrices, not 128x128")
    args = parser.parse_args()
    if "SPINEREVIEW_ORTHANC_URL" not in os.environ:
        parser.error("run under: python -m scripts.services run -- python benchmarks/viewer_first_image.py")
    from scripts.services import free_port
    from tests.browser import support

    trees = {"this checkout": ROOT} | ({f"baseline ({args.baseline})": args.baseline} if args.baseline else {})
    results: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="viewer-bench-") as tmp:
        study_uid, username = prepare(Path(tmp) / "synth", fast=not args.demo_matrices)
        ports = {name: (args.port if i == 0 and args.port else free_port()) for i, name in enumerate(trees)}
        servers = [runserver(tree, ports[name], Path(tmp) / f"runserver-{i}.log")
                   for i, (name, tree) in enumerate(trees.items())]  # fmt: skip
        try:
            node_env = {**os.environ, "NODE_PATH": str(support.EXTENSION_DIR / "node_modules"),
                        "SPINEREVIEW_CHROMIUM": support.chromium(),
                        "SPINEREVIEW_WATERFALL": "1" if args.waterfall else "0",
                        "SPINEREVIEW_WAIT_WARMUP": "0" if args.no_reading else "1"}  # fmt: skip
            trace = Path(args.trace) if args.trace else Path(tmp) / "trace.json"
            for run in range(args.runs):
                for name in trees:
                    first = args.trace is not None and run == 0 and name == "this checkout"
                    node_env["SPINEREVIEW_TRACE"] = str(trace) if first else ""
                    node_env["SPINEREVIEW_TRACE_LOAD"] = args.trace_load
                    proc = subprocess.run(
                        [support.node(), str(NODE_SCRIPT), f"http://127.0.0.1:{ports[name]}", study_uid, username,
                         "pw", "1"], capture_output=True, text=True, env=node_env, cwd=support.EXTENSION_DIR,
                        timeout=900,
                    )  # fmt: skip
                    if proc.returncode != 0:
                        print(proc.stdout, proc.stderr, file=sys.stderr)
                        return 1
                    results[name] += json.loads(proc.stdout.strip().splitlines()[-1])
                    if first and results[name][0][args.trace_load]["first_image_ms"] is not None:
                        print_trace(trace, results[name][0][args.trace_load]["first_image_ms"], args.trace_load)
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=20)

    matrices = "the demo's realistic matrices" if args.demo_matrices else "128x128, 9-10 slices each"
    print(f"viewer first image, 4-series study ({matrices}), {args.runs} runs, "
          f"headless Chromium, Django runserver, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for name, runs in results.items():
        if len(results) > 1:
            print(f" {name}:")
        print("\n".join(summary(runs)))
    if args.waterfall:
        print_waterfall(results["this checkout"][0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
