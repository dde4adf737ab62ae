"""Statistics page and worklist with many signed reviews in a real PostgreSQL (targets at
100,000 reviews: statistics page and API < 1 s cold and < 0.3 s warm, plots < 0.5 s; worklist
page and study list API < 1 s).

    .venv/bin/python benchmarks/stats_page.py [--reviews 10000 [100000 ...]] [--repeat 5] [--worklist-only]

Starts its own PostgreSQL (scripts/services.py), migrates, fills it with ``populate`` (signed
reviews with drafts, 17 findings per draft, signed revisions, edit distances computed by
``reviewer.research.metrics``, arbitrations, label extractions of both texts and annotator
confirmations), then times — as a logged-in researcher through Django's test client —
``/statistics/``, ``/api/stats/``, the CSV (streamed: timed to its first and to its last byte)
and Parquet exports and every plot, and prints the median wall time and the query count of each;
and the first ``/api/stats/`` of a fresh process (imports included, the URL configuration
loaded before it is timed). Several
``--reviews`` sizes are measured in one run, the database grown from one to the next. "Cold"
clears Django's cache (the statistics are read again from the statistics rows that the services
keep; ``populate`` bulk-inserts around them and so rebuilds them), "warm" is a repeated view.
``_compute_bundle_from_tables`` is the same figures computed from the base tables. The worklist
is timed last, as a reader over the same studies (page 1 in reading priority, later pages, the
text + status, received-time and AI-finding filters, and the study list API), each view first
with the cache cleared; ``--worklist-only`` times only the worklist.

``populate`` is also used by the statistics tests (small n) and the screenshot script.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHRASES = {
    "canal_stenosis": ("Severe spinal canal stenosis at {lv}.", "No spinal canal stenosis."),
    "foraminal_narrowing": ("Moderate left neural foraminal narrowing at {lv}.", "Neural foramina are patent."),
    "subarticular_stenosis": ("Right subarticular recess stenosis at {lv}.", ""),
    "disc_herniation": ("Central disc extrusion at {lv}.", "No disc herniation."),
    "disc_height_loss": ("Disc height loss and desiccation at {lv}.", ""),
    "endplate_inflammation": ("Modic type 1 endplate changes at {lv}.", ""),
    "synovial_cyst": ("Left facet synovial cyst at {lv}.", ""),
    "spondylolisthesis": ("Grade 1 anterolisthesis of L4 on L5.", "Alignment is maintained without listhesis."),
    "pars_defect": ("Bilateral pars interarticularis defects at L5.", ""),
    "compression_deformity": ("Old compression deformity of L1.", ""),
    "acute_fracture": ("Acute fracture of the L2 vertebral body.", "No acute fracture."),
    "marrow_edema": ("Bone marrow edema in the L2 vertebral body.", "No marrow edema."),
    "hemangioma": ("Vertebral hemangioma in L3.", ""),
    "osseous_lesion": ("Suspicious osseous lesion in L4, concerning for metastasis.", ""),
    "epidural_lipomatosis": ("Epidural lipomatosis from L4 to S1.", ""),
    "perineural_cyst": ("Perineural (Tarlov) cyst at S2.", ""),
    "intradural_lesion": ("Intradural extramedullary lesion at T12.", ""),
}
PREVALENCE = {"canal_stenosis": 0.35, "foraminal_narrowing": 0.4, "disc_herniation": 0.45, "disc_height_loss": 0.55}
LEVELS = ("L1-2", "L2-3", "L3-4", "L4-5", "L5-S1")
RADPEER_P = (("1", 0.62), ("2a", 0.18), ("2b", 0.08), ("3a", 0.07), ("3b", 0.05))


def _report(labels: dict[str, int], rng: random.Random, style: int) -> str:
    positives = [k for k, v in labels.items() if v == 1]
    body = []
    for key, (present, absent) in PHRASES.items():
        if labels[key] == 1:
            body.append(present.format(lv=rng.choice(LEVELS)))
        elif labels[key] == -1:
            body.append("Possible " + present.format(lv=rng.choice(LEVELS)).lower())
        elif absent:
            body.append(absent)
    history = ("Low back pain.", "Radiculopathy.", "Trauma.")[style % 3]
    impression = [f"{i + 1}. {PHRASES[k][0].format(lv=LEVELS[(i + style) % 5])}" for i, k in enumerate(positives)]
    return (
        f"CLINICAL HISTORY: {history}\nTECHNIQUE: Multiplanar multisequence MRI of the lumbar spine.\n"
        f"FINDINGS: {' '.join(body)}\nIMPRESSION:\n" + ("\n".join(impression) or "1. No acute abnormality.")
    )


def populate(n: int, *, seed: int = 0, findings: bool = True, progress: bool = False) -> dict:
    """Fill the database with ``n`` signed, reviewed studies (bulk inserts). Returns the users."""
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from ml.conditions import CONDITION_KEYS
    from reviewer.models import (
        Arbitration,
        Draft,
        DraftJob,
        Finding,
        LabelConfirmation,
        LabelExtraction,
        ModelVersion,
        ReportRevision,
        Review,
        Study,
    )  # fmt: skip
    from reviewer.research.metrics import report_edit_distances

    rng = random.Random(seed)
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ("radiologist", "annotator", "researcher")}

    def user(name: str, group: str) -> User:
        u, _ = User.objects.get_or_create(username=name)
        u.groups.add(groups[group])
        return u

    readers = [user(f"reader{i}", "radiologist") for i in range(5)]
    annotators = [user(f"annotator{i}", "annotator") for i in range(2)]
    versions = [ModelVersion.objects.get_or_create(name="spinefm-agents", version=v)[0] for v in ("1", "2")]
    tag = f"{seed}-{int(time.time() * 1000) % 10**9}"
    now = timezone.now()
    t0 = time.perf_counter()
    studies = Study.objects.bulk_create(
        [Study(study_uid=f"2.25.{tag.replace('-', '')}{i}", orthanc_id=f"bench-{tag}-{i}", patient_id=f"SYN-{i:05d}",
               patient_name=f"SYNTHETIC^BENCH{i}", description="MRI LUMBAR SPINE", status="signed", modalities="MR")
         for i in range(n)]
    )  # fmt: skip
    jobs = DraftJob.objects.bulk_create(
        [DraftJob(study=s, pipeline_version=f"bench@{tag}", state="done", model_version=versions[i % 2])
         for i, s in enumerate(studies)]
    )  # fmt: skip
    truth, drafted, texts, scores = [], [], [], []
    for i in range(n):
        t = {k: int(rng.random() < PREVALENCE.get(k, 0.08)) for k in CONDITION_KEYS}
        if rng.random() < 0.1:
            t[rng.choice(CONDITION_KEYS)] = -1
        score = rng.choices([s for s, _ in RADPEER_P], [p for _, p in RADPEER_P])[0]
        d = dict(t)
        flips = {"1": 0, "2a": 1, "2b": 1, "3a": 2, "3b": 2}[score] + (i % 7 == 0 and score != "1")
        for key in rng.sample(CONDITION_KEYS, flips):
            d[key] = 0 if d[key] == 1 else 1
        version_bias = 0 if i % 2 else 1  # model 1 misses a little more
        if version_bias and rng.random() < 0.1:
            d[rng.choice(CONDITION_KEYS)] = 0
        truth.append(t)
        drafted.append(d)
        scores.append(score)
        texts.append((_report(d, rng, i), _report(t, rng, i + 1)))
    drafts = Draft.objects.bulk_create(
        [Draft(study=s, job=j, model_version=j.model_version, text=texts[i][0])
         for i, (s, j) in enumerate(zip(studies, jobs, strict=True))]
    )  # fmt: skip
    if findings:
        Finding.objects.bulk_create(
            [Finding(draft=dr, condition=k, present=drafted[i][k] == 1,
                     probability=min(1.0, max(0.0, rng.gauss(0.72 if truth[i][k] == 1 else 0.25, 0.18))))
             for i, dr in enumerate(drafts) for k in CONDITION_KEYS],
            batch_size=5000,
        )  # fmt: skip
    revisions = ReportRevision.objects.bulk_create(
        [ReportRevision(study=s, number=1, draft=drafts[i], author=readers[i % 5], text=texts[i][1])
         for i, s in enumerate(studies)]
    )  # fmt: skip
    reviews = Review.objects.bulk_create(
        [Review(study=s, reader=readers[i % 5], draft=drafts[i], radpeer=scores[i], in_scope=(i % 9 != 0),
                comment="" if scores[i] in ("1", "2a") else "missed finding", signed_revision=revisions[i],
                signed_at=now, edit_distance=report_edit_distances(texts[i][0], texts[i][1], draft_id=drafts[i].pk,
                                                                   revision_id=revisions[i].pk))
         for i, s in enumerate(studies)],
        batch_size=2000,
    )  # fmt: skip
    Arbitration.objects.bulk_create(
        [Arbitration(review=r, state="resolved" if i % 3 == 0 else "open", decision=r.radpeer if i % 3 == 0 else "",
                     comment="confirmed" if i % 3 == 0 else "")
         for i, r in enumerate(reviews) if r.radpeer in ("2b", "3a", "3b")]
    )  # fmt: skip

    def conf(labels: dict[str, int]) -> dict[str, float]:
        return {k: (0.55 if v == -1 else round(rng.uniform(0.6, 0.99), 2)) for k, v in labels.items()}

    signed_ex = LabelExtraction.objects.bulk_create(
        [LabelExtraction(study=s, revision=revisions[i], source="signed_report", report_text=texts[i][1],
                         extractor="synthetic@bench", labels=truth[i], confidence=conf(truth[i]))
         for i, s in enumerate(studies)],
        batch_size=2000,
    )  # fmt: skip
    LabelExtraction.objects.bulk_create(
        [LabelExtraction(study=s, source="draft", report_text=texts[i][0], extractor="synthetic@bench",
                         labels=drafted[i], confidence=conf(drafted[i]))
         for i, s in enumerate(studies)],
        batch_size=2000,
    )  # fmt: skip
    confirmations = []
    for i, e in enumerate(signed_ex):
        if i % 5:
            continue
        for a, annotator in enumerate(annotators[: 1 + (i % 10 == 0)]):
            labels = dict(truth[i])
            if rng.random() < 0.25 + 0.1 * a:
                key = rng.choice(CONDITION_KEYS)
                labels[key] = rng.choice([-1, 0, 1])
            confirmations.append(LabelConfirmation(extraction=e, annotator=annotator, labels=labels))
    LabelConfirmation.objects.bulk_create(confirmations, batch_size=2000)
    # bulk inserts go around the services, so the statistics rows are rebuilt as after an import
    from reviewer.services.statistics import rebuild_statistics

    t1 = time.perf_counter()
    rebuild_statistics()
    if progress:
        print(f"statistics rows rebuilt in {time.perf_counter() - t1:.1f} s", flush=True)
    if progress:
        print(f"populated {n} reviews in {time.perf_counter() - t0:.1f} s", flush=True)
    return {"readers": readers, "annotators": annotators, "versions": versions}


def _time(client, url: str, repeat: int, *, cold: bool | str = False) -> tuple[float, int, int, float]:  # type: ignore[no-untyped-def]
    """Median seconds, queries, bytes and seconds to the first byte of ``url``; ``cold=True``
    clears the cache before each view, ``cold="drawing"`` only the plot's rendered bytes (drawn
    from the cached statistics)."""
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    first_bytes = []
    queries = 0
    size = 0
    for _ in range(repeat):
        if cold == "drawing":
            from reviewer.research import stats

            name = url.rsplit("/", 1)[-1]
            cache.delete(f"spinereview:stats:plot:{stats.fingerprint_digest()}:{name}")
        elif cold:
            cache.clear()  # the per-condition label tables are recomputed
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            response = client.get(url)
            chunks = iter(response.streaming_content) if response.streaming else iter([response.content])
            body = next(chunks, b"")
            first_bytes.append(time.perf_counter() - t0)
            body += b"".join(chunks)
            times.append(time.perf_counter() - t0)
        assert response.status_code == 200, (url, response.status_code)
        queries = len(ctx.captured_queries)
        size = len(body)
    return statistics.median(times), queries, size, statistics.median(first_bytes)


_FRESH = """
import os, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import resolve
settings.ALLOWED_HOSTS = ["*"]
client = Client()
client.force_login(User.objects.get(username="researcher-bench"))
t0 = time.perf_counter()
resolve("/api/stats/")  # the URL configuration: every view module and what they import
t1 = time.perf_counter()
cache.clear()
assert client.get("/api/stats/").status_code == 200
print(t1 - t0, time.perf_counter() - t1)
"""


def _fresh_process_first_view() -> tuple[float, float]:
    """Seconds of loading the URL configuration and of the first ``/api/stats/`` after it in a new
    interpreter, the cache cleared: the figures computed cold plus what they import on first use."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _FRESH], cwd=ROOT, env=os.environ.copy(), capture_output=True,
                         text=True, check=True)  # fmt: skip
    urls, view = out.stdout.strip().splitlines()[-1].split()
    return float(urls), float(view)


def _time_statistics(client, repeat: int) -> None:  # type: ignore[no-untyped-def]
    """The statistics computed once, a sign-off's refresh, then the statistics page, API, exports
    and plots through ``client`` (a researcher)."""
    from reviewer.models import Review
    from reviewer.research import plots, stats
    from reviewer.services.statistics import refresh_review_statistics

    for name in ("review_rows", "label_agreement", "draft_accuracy", "_compute_bundle_from_tables",
                 "_compute_bundle"):  # fmt: skip
        t0 = time.perf_counter()
        getattr(stats, name)()
        print(f"  stats.{name + '()':48s} {time.perf_counter() - t0:9.3f}", flush=True)
    one = Review.objects.order_by("-id").values_list("id", flat=True)[:1]
    t0 = time.perf_counter()
    refresh_review_statistics(review_ids=list(one))  # what a sign-off adds
    print(f"  {'refresh_review_statistics(one review)':54s} {time.perf_counter() - t0:9.3f}", flush=True)
    urls = ["/statistics/", "/api/stats/", "/api/exports/reviews.csv", "/api/exports/reviews.parquet"]
    urls += [f"/api/stats/plots/{p}.png" for p in plots.PLOTS]
    for url in urls:
        if url.endswith("/"):  # cold: the statistics read again from the statistics rows
            runs = [("cold: cache cleared", repeat, True), ("warm", repeat, False)]
        elif "/plots/" in url:  # cold: statistics read and drawn; drawn from cached statistics; cached
            runs = [("cold: cache cleared", repeat, True), ("drawn", repeat, "drawing")]
            runs += [("cached", repeat, False)]
        else:
            runs = [("", max(1, repeat // 2), False)]
        for label, times, cold in runs:
            seconds, queries, size, first_byte = _time(client, url, times, cold=cold)
            what = f"{url} ({label})" if label else url
            print(f"{what:55s} {seconds:9.3f} {queries:8d} {size:10d}", flush=True)
            if url.endswith(".csv"):
                print(f"{url + ' (first byte)':55s} {first_byte:9.3f}", flush=True)
    fresh = [_fresh_process_first_view() for _ in range(max(1, repeat // 2))]
    urls_seconds, view = (statistics.median(f[i] for f in fresh) for i in (0, 1))
    print(f"{'/api/stats/ (fresh process, cold; URLs loaded first)':55s} {view:9.3f}", flush=True)
    print(f"{'  loading the URL configuration (fresh process)':55s} {urls_seconds:9.3f}", flush=True)


WORKLIST_URLS = (
    "/",  # a reader's default: reading priority, page 1
    "/?page=2",
    "/?sort=received&page=3",
    "/?q=LUMBAR&status=signed",
    "/?finding=acute_fracture",
    "/api/studies/?page=2",
)


def _time_worklist(client, repeat: int) -> None:  # type: ignore[no-untyped-def]
    """The worklist page and the study list API through ``client`` (a reader), cold (cache
    cleared: the worklist reads none, so cold and warm differ by PostgreSQL's own caches only)."""
    for url in WORKLIST_URLS:
        seconds, queries, size, _ = _time(client, url, repeat, cold=True)
        print(f"{url:55s} {seconds:9.3f} {queries:8d} {size:10d}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, nargs="+", default=[10_000], help="one or more sizes, ascending")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--worklist-only", action="store_true", help="time the worklist, not the statistics")
    args = parser.parse_args()

    from scripts.services import start_postgres

    workdir = Path(tempfile.mkdtemp(prefix="spinereview-bench-stats-"))
    pg = start_postgres(workdir)
    try:
        os.environ.update(pg.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings.test"
        os.environ.setdefault("SPINEREVIEW_EXPORT_SECRET", "benchmark-only-secret")
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth.models import Group, User
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client

        settings.ALLOWED_HOSTS = ["*"]
        call_command("migrate", verbosity=0)
        researcher = User.objects.create_user("researcher-bench", password="x")
        researcher.groups.add(Group.objects.get_or_create(name="researcher")[0])
        client = Client()
        client.force_login(researcher)
        reader = None
        have = 0
        for i, n in enumerate(sorted(args.reviews)):
            made = populate(n - have, seed=i, progress=True)
            have = n
            reader = reader or made["readers"][0]
            with connection.cursor() as cur:
                cur.execute("ANALYZE")
            print(f"\nPostgreSQL, {n} signed reviews, 17 findings each; median of {args.repeat} runs")
            print(f"{'url':55s} {'median s':>9s} {'queries':>8s} {'bytes':>10s}")
            if not args.worklist_only:
                _time_statistics(client, args.repeat)
            worklist = Client()  # the worklist over the same studies, as a reader (researchers have none)
            worklist.force_login(reader)
            _time_worklist(worklist, args.repeat)
        print(f"load average: {os.getloadavg()[0]:.2f} (2-core machine shared with other work)")
    finally:
        pg.close()


if __name__ == "__main__":
    main()
