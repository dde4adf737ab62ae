"""The viewer's code-cache warm-up in the real viewer and real Chromium: after the first study's
image the viewer runs itself once more in an inert, off-screen frame that asks for nothing but
GETs and is removed once it has drawn; the next study then compiles OHIF's app bundle from V8's
code cache, where without the warm-up (a second study opened at once) it compiles it again; a
browser that has warmed this build does not warm it again."""

from __future__ import annotations

import pytest

from tests.browser import support

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_the_next_study_starts_from_compiled_code_after_a_warm_up_that_leaves_no_trace(
    viewer_build, viewer_urls, orthanc_settings, empty_orthanc, synthetic_study_dir, role_user, screenshots_dir,
    settings,
):  # type: ignore[no-untyped-def]  # fmt: skip
    study = support.import_study(synthetic_study_dir)
    support.draft_from_truth(study, synthetic_study_dir)
    user = role_user("radiologist", username="reader-warmup")
    app_bundle = next(p.name for p in settings.VIEWER_OHIF_DIST.glob("app.bundle.*.js"))
    seen = support.run_node(
        support.ROOT / "tests" / "browser" / "e2e_warmup.cjs",
        {
            "app_url": viewer_urls["app"], "viewer_url": viewer_urls["viewer"], "username": user.username,
            "password": "pw", "screenshots": str(screenshots_dir), "study_uid": study.study_uid,
            "app_bundle": app_bundle,
        },
        timeout=300,
    )  # fmt: skip
    assert seen["ok"], f"{seen.get('error')}\nconsole: {seen.get('console_errors')}\nhttp: {seen.get('http_errors')}"
    assert not seen["http_errors"], seen["http_errors"]

    # the control: a second study opened before any warm-up compiles the app bundle again
    assert seen["control_state"] in (None, "scheduled", "running")  # never done: its frame is not let through
    assert seen["control_compiles"], "no compile event of the app bundle in the control's trace"
    assert not any(c.get("consumedCacheSize") for c in seen["control_compiles"]), seen["control_compiles"]

    # the frame: this page's URL, off-screen at the page's size, inert and out of the tab order
    frame = seen["frame"]
    assert frame["src"] == frame["page"]
    assert frame["inert"] is True
    assert frame["tabIndex"] == -1
    assert frame["right"] <= 0, frame
    assert [frame["width"], frame["height"]] == frame["viewport"]
    # it drew, was removed, left the focus on the page, and asked for nothing but GETs (no reading
    # time, no verdict, no save: nobody was reading in it)
    assert seen["state"]["state"] == "done", seen["state"]
    assert seen["state"]["ms"] > 0
    assert seen["frames_after"] == 1
    assert seen["focus_after"] != "IFRAME"
    requests = seen["frame_requests"]
    assert any("/dicom-web/" in r["url"] for r in requests), requests[:5]
    assert {r["method"] for r in requests} == {"GET"}, [r for r in requests if r["method"] != "GET"]

    # the next study: the app bundle from V8's code cache, and no second warm-up of this build
    assert any(c.get("consumedCacheSize", 0) > 1_000_000 and not c.get("cacheRejected") for c in seen["compiles"]), (
        seen["compiles"]
    )
    assert seen["state_next"]["state"] == "skipped", seen["state_next"]
    assert seen["frames_next"] == 1
