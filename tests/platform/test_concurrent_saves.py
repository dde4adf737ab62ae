"""Two saves of one report with the same parent at the same moment, on both databases the app
runs on: exactly one is accepted (201), the other is kept as a conflicting revision (409), and
both texts are stored. Nothing may fail with 500 ("database is locked" on SQLite).

Each save runs in its own thread with its own database connection, through the whole HTTP
stack. PostgreSQL: the test database of the services, in this process. SQLite: the same
scenario in a subprocess with a file database (``python -m tests.platform.test_concurrent_saves``),
since the test run's database is PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROUNDS = 12
ROOT = Path(__file__).resolve().parents[2]


def _save(user, url: str, text: str, parent: int | None, barrier: threading.Barrier, outcomes: list, i: int) -> None:  # type: ignore[no-untyped-def]
    """One tab's save, in its own thread (so with its own database connection)."""
    from django.db import connection
    from rest_framework.test import APIClient

    try:
        client = APIClient(raise_request_exception=False)
        client.force_authenticate(user)  # no session row: only the save itself touches the database
        barrier.wait(timeout=30)
        response = client.post(url, {"text": text, "parent": parent}, format="json")
        outcomes[i] = str(response.status_code)
        if response.status_code >= 500:
            outcomes[i] += f" {response.content[:200]!r}"
    except Exception as exc:  # reported to the test as the outcome
        outcomes[i] = f"exception {exc!r}"
    finally:
        connection.close()


def race(*, study_id: int, user_id: int, rounds: int = ROUNDS) -> list[dict]:
    """``rounds`` times: two threads post a save with the same parent (the reader's head) at
    once. Returns per round the two outcomes and which of the two texts ended up stored."""
    from django.contrib.auth import get_user_model

    from reviewer.models import ReportRevision, Study
    from reviewer.selectors import head_revision

    user = get_user_model().objects.get(pk=user_id)
    study = Study.objects.get(pk=study_id)
    url = f"/api/studies/{study_id}/revisions/"
    out = []
    for r in range(rounds):
        head = head_revision(study, author=user)
        parent = head.pk if head else None
        barrier = threading.Barrier(2)
        outcomes = ["", ""]
        texts = [f"round {r}: text of tab {i}" for i in range(2)]
        threads = [
            threading.Thread(target=_save, args=(user, url, texts[i], parent, barrier, outcomes, i)) for i in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        stored = set(ReportRevision.objects.filter(study_id=study_id, text__in=texts).values_list("text", flat=True))
        out.append({"outcomes": sorted(outcomes), "stored": sorted(stored), "texts": texts})
    return out


def _assert_no_text_lost(rounds: list[dict]) -> None:
    for i, r in enumerate(rounds):
        assert r["outcomes"] == ["201", "409"], f"round {i}: {r['outcomes']}"
        assert r["stored"] == sorted(r["texts"]), f"round {i}: a text was lost ({r['stored']})"


@pytest.mark.django_db(transaction=True)
def test_simultaneous_saves_on_postgresql_give_201_and_409_and_keep_both_texts(role_user):  # type: ignore[no-untyped-def]
    from django.db import connection

    from reviewer.models import ReportRevision
    from tests.factories import DraftFactory

    if connection.vendor != "postgresql":
        pytest.skip("the test run's database is not PostgreSQL (the SQLite case is the test below)")
    draft = DraftFactory()
    reader = role_user("radiologist")
    rounds = race(study_id=draft.study_id, user_id=reader.pk)
    _assert_no_text_lost(rounds)
    chain = ReportRevision.objects.filter(study=draft.study, author=reader)
    assert chain.filter(is_conflict=False).count() == ROUNDS  # one accepted save per round: a straight chain
    assert chain.filter(is_conflict=True).count() == ROUNDS


def test_simultaneous_saves_on_sqlite_give_201_and_409_and_keep_both_texts(tmp_path):  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "SPINEREVIEW_VAR_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tests.platform.test_concurrent_saves", str(ROUNDS)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["vendor"] == "sqlite"
    _assert_no_text_lost(report["rounds"])
    assert report["accepted"] == ROUNDS
    assert report["conflicts"] == ROUNDS


def _sqlite_main(rounds: int) -> None:
    """The SQLite case: migrate a fresh file database, then race (prints one JSON line)."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from reviewer.models import ReportRevision
    from tests.factories import DraftFactory, UserFactory

    call_command("migrate", verbosity=0)
    draft = DraftFactory()
    reader = UserFactory(role="radiologist")
    result = race(study_id=draft.study_id, user_id=reader.pk, rounds=rounds)
    chain = ReportRevision.objects.filter(study=draft.study, author=reader)
    print(
        json.dumps(
            {
                "vendor": connection.vendor,
                "rounds": result,
                "accepted": chain.filter(is_conflict=False).count(),
                "conflicts": chain.filter(is_conflict=True).count(),
            }
        )
    )


if __name__ == "__main__":
    _sqlite_main(int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS)
