"""The viewer origin and the panels' API, without a browser: host routing, login, the signed
hand-off from the app origin, OHIF file serving with the SPA fallback, the rendered app-config,
and the endpoints the panels call (role matrix; reader box SR against the real Orthanc)."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.test import Client

from reviewer import viewer, viewer_files
from tests.browser import support
from tests.factories import DraftFactory, FindingFactory, StudyFactory, UserFactory

VIEWER = "viewer.localhost:8000"
APP = "localhost:8000"


@pytest.fixture
def viewer_settings(settings, tmp_path):  # type: ignore[no-untyped-def]
    """A tiny stand-in dist (the real one is 200 MB and served the same way) on a known origin."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text('<script src="/app.bundle.0f6159c501addfe9.js"></script>')
    (dist / "app.bundle.0f6159c501addfe9.js").write_text("console.log('ohif')")
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "extension.js").write_text("export default {}")
    settings.VIEWER_ORIGIN = f"http://{VIEWER}"
    settings.VIEWER_OHIF_DIST = dist
    settings.VIEWER_EXTENSION_DIST = ext
    settings.ALLOWED_HOSTS = ["localhost", "viewer.localhost", "testserver"]
    return settings


def _on(host: str, user=None) -> Client:  # type: ignore[no-untyped-def]
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
    return client


pytestmark = pytest.mark.django_db


def test_open_study_sends_a_logged_in_user_to_the_viewer_origin_with_a_hand_off_token(viewer_settings):  # type: ignore[no-untyped-def]
    study = StudyFactory()
    response = _on(APP, UserFactory()).get(f"/viewer/open/{study.study_uid}/")
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"http://{VIEWER}/viewer/handoff/"
    query = parse_qs(target.query)
    assert query == {"next": [f"/spine-review?StudyInstanceUIDs={study.study_uid}"]}
    assert signing.loads(target.fragment, salt=viewer.HANDOFF_SALT)  # the token: in the fragment, never logged


def test_open_study_needs_a_login_and_a_known_study(viewer_settings):  # type: ignore[no-untyped-def]
    assert _on(APP).get("/viewer/open/1.2.3/")["Location"].startswith("/accounts/login/")
    assert _on(APP, UserFactory()).get("/viewer/open/1.2.3/").status_code == 404


def test_hand_off_logs_the_user_in_on_the_viewer_origin_and_refuses_forged_or_foreign_targets(viewer_settings):  # type: ignore[no-untyped-def]
    user = UserFactory()
    study = StudyFactory()
    location = urlsplit(_on(APP, user).get(f"/viewer/open/{study.study_uid}/")["Location"])
    token = location.fragment
    viewer_client = _on(VIEWER)
    page = viewer_client.get(f"{location.path}?{location.query}")  # the page that POSTs the fragment
    assert page.status_code == 200
    forged = _on(VIEWER).post("/viewer/handoff/", {"token": token[:-2] + "xx", "next": "/spine-review"})
    assert forged["Location"].startswith("/accounts/login/")
    foreign = _on(VIEWER).post("/viewer/handoff/", {"token": token, "next": "https://evil.example/"})
    assert foreign.status_code == 400

    response = viewer_client.post("/viewer/handoff/", {"token": token, "next": parse_qs(location.query)["next"][0]})
    assert response.status_code == 302
    assert response["Location"] == f"/spine-review?StudyInstanceUIDs={study.study_uid}"
    assert viewer_client.get("/viewer/auth/").status_code == 204  # the session exists on this origin now


def test_viewer_origin_serves_ohif_with_spa_fallback_to_logged_in_users_only(viewer_settings):  # type: ignore[no-untyped-def]
    anonymous = _on(VIEWER).get("/spine-review", {"StudyInstanceUIDs": "1.2.3"})
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/?next=/spine-review")
    client = _on(VIEWER, UserFactory())
    index = client.get("/spine-review", {"StudyInstanceUIDs": "1.2.3"})
    assert index.status_code == 200
    assert b"app.bundle.0f6159c501addfe9.js" in b"".join(index.streaming_content)
    assert index["Cache-Control"] == "no-cache"
    # framed by the viewer origin only (its code-cache warm-up frame), never by another site
    assert index["X-Frame-Options"] == "SAMEORIGIN"
    assert index["Content-Security-Policy"] == "frame-ancestors 'self'"
    revalidated = client.get("/spine-review", {"StudyInstanceUIDs": "1.2.3"}, HTTP_IF_NONE_MATCH=index["ETag"])
    assert revalidated.status_code == 304
    assert revalidated["X-Frame-Options"] == "SAMEORIGIN"  # not the middleware's DENY on a revalidation
    assert _on(APP, UserFactory()).get("/")["X-Frame-Options"] == "DENY"  # the app's pages: never framed
    bundle = client.get("/app.bundle.0f6159c501addfe9.js")
    assert bundle["Content-Type"].startswith("text/javascript")
    assert "immutable" in bundle["Cache-Control"]
    assert client.get("/spinereview/extension.js").status_code == 200
    assert client.get("/spinereview/missing.js").status_code == 404
    assert client.get("/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd").status_code == 404  # never outside dist/
    assert _on(VIEWER).get("/viewer/auth/").status_code == 401


def test_bundles_go_gzipped_where_a_fresh_sibling_exists_and_revalidate_with_304(viewer_settings):  # type: ignore[no-untyped-def]
    dist = viewer_settings.VIEWER_OHIF_DIST
    big = "export const table = [" + ",".join(str(i % 97) for i in range(20000)) + "];"
    (dist / "app.bundle.0f6159c501addfe9.js").write_text(big)
    (dist / "1602.css").write_text("body { color: red; }\n" * 200)
    assert viewer_files.precompress(dist) == 2  # the bundle and the stylesheet; index.html is under 1 kB
    assert viewer_files.precompress(dist) == 0  # up to date: nothing rewritten
    client = _on(VIEWER, UserFactory())

    packed = client.get("/app.bundle.0f6159c501addfe9.js", HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert packed["Content-Encoding"] == "gzip"
    assert packed["Content-Type"].startswith("text/javascript")
    assert "Accept-Encoding" in packed["Vary"]
    body = b"".join(packed.streaming_content)
    assert gzip.decompress(body).decode() == big
    assert len(body) < len(big) / 3
    plain = client.get("/app.bundle.0f6159c501addfe9.js", HTTP_ACCEPT_ENCODING="gzip;q=0, identity")
    assert "Content-Encoding" not in plain
    assert b"".join(plain.streaming_content).decode() == big

    # a rebuilt file is never answered with its stale sibling
    stale = dist / "1602.css"
    stale.write_text("body { color: blue; }\n" * 200)
    os.utime(stale, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    fresh = client.get("/1602.css", HTTP_ACCEPT_ENCODING="gzip")
    assert "Content-Encoding" not in fresh
    assert b"blue" in b"".join(fresh.streaming_content)
    assert fresh["Cache-Control"] == "no-cache"  # not content-hashed: revalidated ...
    again = client.get("/1602.css", HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=fresh["ETag"])
    assert again.status_code == 304  # ... for the price of a round trip
    assert client.get("/1602.css", HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_extension_entry_files_are_kept_for_good_only_under_their_current_stamp(viewer_settings):  # type: ignore[no-untyped-def]
    ext = viewer_settings.VIEWER_EXTENSION_DIST
    (ext / "chunks").mkdir()
    (ext / "chunks" / "chunk-MFD2GK2R.js").write_text("export const x = 1;")
    client = _on(VIEWER, UserFactory())
    stamp = viewer.file_version(ext / "extension.js")
    assert "immutable" in client.get(f"/spinereview/extension.js?v={stamp}")["Cache-Control"]
    assert client.get("/spinereview/extension.js?v=0000000000000000")["Cache-Control"] == "no-cache"
    assert client.get("/spinereview/extension.js")["Cache-Control"] == "no-cache"
    assert "immutable" in client.get("/spinereview/chunks/chunk-MFD2GK2R.js")["Cache-Control"]
    (ext / "extension.js").write_text("export default { id: 'rebuilt' }")
    assert viewer.file_version(ext / "extension.js") != stamp  # a new build, a new URL in app-config
    assert client.get(f"/spinereview/extension.js?v={stamp}")["Cache-Control"] == "no-cache"


def test_viewer_root_goes_to_the_app_worklist_when_the_app_origin_is_known(viewer_settings):  # type: ignore[no-untyped-def]
    client = _on(VIEWER, UserFactory())
    viewer_settings.VIEWER_APP_ORIGIN = ""
    assert client.get("/").status_code == 200  # OHIF's study list when the app origin is not configured
    viewer_settings.VIEWER_APP_ORIGIN = f"http://{APP}"
    assert client.get("/")["Location"] == f"http://{APP}/"


def test_app_config_points_ohif_at_this_origins_dicomweb_proxy_and_our_extension(viewer_settings):  # type: ignore[no-untyped-def]
    body = _on(VIEWER).get("/app-config.js").content.decode()
    assert f'"qidoRoot": "http://{VIEWER}/dicom-web"' in body
    stamp = viewer.file_version(viewer_settings.VIEWER_EXTENSION_DIST / "extension.js")
    assert len(stamp) == 16
    assert f'"http://{VIEWER}/spinereview/extension.js?v={stamp}"' in body
    assert f'"http://{VIEWER}/spinereview/mode.js"' in body  # not built here: no stamp
    assert '"ohif.tours": {' in body
    assert '"warmup": true' in body  # the next study's code-cache warm-up, on by default
    viewer_settings.VIEWER_WARMUP = False
    assert '"warmup": false' in _on(VIEWER).get("/app-config.js").content.decode()
    assert _on(APP).get("/app-config.js").status_code == 404  # the app origin is not the viewer


OHIF_BUILD_LISTS = """
window.modes = ['@ohif/mode-longitudinal', '@ohif/mode-basic', '@ohif/mode-segmentation', '@ohif/mode-tmtv',
  '@ohif/mode-microscopy', '@ohif/mode-preclinical-4d', '@ohif/mode-ultrasound-pleura-bline'];
window.extensions = ['@ohif/extension-default', '@ohif/extension-cornerstone',
  '@ohif/extension-ultrasound-pleura-bline'];
const [modes, extensions] = [window.modes, window.extensions];
const settings = window.config();  // as OHIF's appInit calls it, once its bundle has set the lists
console.log(JSON.stringify({ settings, modes, extensions, same: modes === window.modes,
  extensionsOnWindow: window.config.extensions, kind: typeof window.config }));
"""


def test_app_config_trims_ohifs_built_in_modes_to_those_our_mode_uses(viewer_settings, tmp_path):  # type: ignore[no-untyped-def]
    body = _on(VIEWER).get("/app-config.js").content.decode()
    config = json.loads(re.search(r"window\.config = (\{.*\});", body, re.S).group(1))  # type: ignore[union-attr]
    script = tmp_path / "config.cjs"
    script.write_text("globalThis.window = globalThis;\n" + body + OHIF_BUILD_LISTS)
    proc = subprocess.run([support.node(), str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # OHIF gets the same settings, plus how to draw: node has no WebGL to ask, so Cornerstone decides
    ours = config["spinereview"] | {"renderingUsed": "gpu", "webglRenderer": None}
    assert out["settings"] == config | {"spinereview": ours, "useCPURendering": False}
    assert out["extensionsOnWindow"] == config["extensions"]  # still readable on window.config (our mode reads it)
    assert out["modes"] == ["@ohif/mode-longitudinal", "@ohif/mode-basic"]
    assert out["same"]  # trimmed in place: the very array OHIF imports next
    assert out["extensions"] == ["@ohif/extension-default", "@ohif/extension-cornerstone"]


RENDERING_SCRIPT = r"""
const { chromium } = require('playwright-core');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu'];
(async () => {
  const bodies = JSON.parse(require('fs').readFileSync(0, 'utf8')).bodies;
  const browser = await chromium.launch({ executablePath: process.env.SPINEREVIEW_CHROMIUM, args: FLAGS });
  const out = {};
  for (const [choice, body] of Object.entries(bodies)) {
    const page = await browser.newPage();
    await page.addScriptTag({ content: body + 'window.modes = []; window.extensions = [];' });
    out[choice] = await page.evaluate(() => {
      const s = window.config();  // as OHIF's appInit calls it
      const gl = document.createElement('canvas').getContext('webgl2');
      const info = gl && gl.getExtension('WEBGL_debug_renderer_info');
      return { ours: s.spinereview, cpu: s.useCPURendering, dialog: s.showCPUFallbackMessage,
        renderer: gl ? gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER) : null };
    });
    await page.close();
  }
  await browser.close();
  console.log(JSON.stringify(out));
})();
"""


@pytest.mark.browser
def test_the_viewer_draws_on_the_cpu_exactly_where_webgl_is_a_software_renderer(viewer_settings, tmp_path):  # type: ignore[no-untyped-def]
    bodies = {}
    for choice in ("auto", "gpu", "cpu"):
        viewer_settings.VIEWER_RENDERING = choice
        bodies[choice] = _on(VIEWER).get("/app-config.js").content.decode()
    script = tmp_path / "rendering.cjs"
    script.write_text(RENDERING_SCRIPT)
    seen = support.run_node(script, {"bodies": bodies}, timeout=120)
    renderer = seen["auto"]["renderer"]
    software = renderer is None or any(s in renderer.lower() for s in ("swiftshader", "llvmpipe", "software"))
    assert seen["auto"]["ours"]["rendering"] == "auto"
    assert seen["auto"]["ours"]["renderingUsed"] == ("cpu" if software else "gpu"), seen
    assert seen["auto"]["ours"]["webglRenderer"] == renderer
    assert seen["auto"]["cpu"] is software
    # forced either way, whatever the browser has; the fallback dialog only for a fallback nobody chose
    assert (seen["gpu"]["ours"]["renderingUsed"], seen["gpu"]["cpu"], seen["gpu"]["dialog"]) == ("gpu", False, True)
    assert (seen["cpu"]["ours"]["renderingUsed"], seen["cpu"]["cpu"], seen["cpu"]["dialog"]) == ("cpu", True, False)


def test_the_app_api_and_dicomweb_proxy_answer_on_the_viewer_origin_too(viewer_settings):  # type: ignore[no-untyped-def]
    client = _on(VIEWER, UserFactory(role="radiologist"))
    assert client.get("/api/studies/").status_code == 200
    assert _on(VIEWER).get("/dicom-web/studies").status_code == 401


@pytest.mark.parametrize(("role", "status"), [("radiologist", 200), ("researcher", 403), ("annotator", 403),
                                              ("admin", 200), (None, 403)])  # fmt: skip
def test_study_context_for_the_panels_by_role(api_as, role, status):  # type: ignore[no-untyped-def]
    finding = FindingFactory(key_slices=[{"series_uid": "1.2", "sop_uid": "1.2.3", "index": 4}])
    response = api_as(role).get(f"/api/viewer/studies/{finding.draft.study.study_uid}/")
    assert response.status_code == status
    if status == 200:
        data = response.json()
        assert len(data["conditions"]) == 17
        assert data["draft"]["findings"][0]["key_slices"][0]["index"] == 4
        assert data["structured_report"] is None
        assert data["job_pending"] is False


def test_study_context_of_a_blinded_study_does_not_name_the_model_to_its_reader(api_as):  # type: ignore[no-untyped-def]
    from reviewer.models import StructuredReport

    draft = DraftFactory(study=StudyFactory(blinded=True))
    StructuredReport.objects.create(
        study=draft.study, draft=draft, source="ai", sop_instance_uid="1.2.9", series_instance_uid="1.2.8",
        series_description="SpineReview AI tiny@1",
    )  # fmt: skip
    reader = api_as("radiologist").get(f"/api/viewer/studies/{draft.study.study_uid}/").json()
    assert reader["job"]["pipeline_version"] is None
    assert reader["structured_report"]["series_description"] is None
    admin = api_as("admin").get(f"/api/viewer/studies/{draft.study.study_uid}/").json()
    assert admin["job"]["pipeline_version"] == "test-pipeline@1"
    assert admin["structured_report"]["series_description"] == "SpineReview AI tiny@1"


def test_study_context_of_an_undrafted_study_says_so(api_as):  # type: ignore[no-untyped-def]
    study = StudyFactory()
    data = api_as("radiologist").get(f"/api/viewer/studies/{study.study_uid}/").json()
    assert data["draft"] is None
    assert data["study"]["status"] == "awaiting_draft"
    assert api_as("radiologist").get("/api/viewer/studies/9.9.9/").status_code == 404


def test_next_study_skips_the_ones_the_reader_signed(api_as):  # type: ignore[no-untyped-def]
    client = api_as("radiologist")
    first, second = DraftFactory().study, DraftFactory().study
    for s in (first, second):
        s.status = s.Status.DRAFT_READY
        s.save()
    assert client.get("/api/viewer/next-study/", {"after": first.pk}).json()["study_uid"] == second.study_uid
    assert client.get("/api/viewer/next-study/", {"after": second.pk}).status_code == 404


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_saving_boxes_writes_a_new_reader_sr_version_and_bad_boxes_store_nothing(
    api_as, orthanc_settings, empty_orthanc, tmp_path
):  # type: ignore[no-untyped-def]
    from reviewer.models import StructuredReport
    from tests.browser import support

    study_dir = support.synth_study(tmp_path / "synth", seed=5)
    study = support.import_study(study_dir)
    _draft, ai_sr = support.draft_from_truth(study, study_dir)
    box = dict(ai_sr.boxes[0])
    box["xyxy"] = [box["xyxy"][0] + 1, box["xyxy"][1], box["xyxy"][2] + 1, box["xyxy"][3]]

    assert api_as("researcher").post(f"/api/studies/{study.pk}/boxes/", {"parent": ai_sr.pk, "boxes": [box]},
                                     format="json").status_code == 403  # fmt: skip
    client = api_as("radiologist", csrf=False)
    bad = client.post(f"/api/studies/{study.pk}/boxes/",
                      {"parent": ai_sr.pk, "boxes": [{**box, "xyxy": [0, 0, 5000, 5000]}]}, format="json")  # fmt: skip
    assert bad.status_code == 400
    assert "inside the" in bad.json()["detail"]
    assert not StructuredReport.objects.filter(source="reader").exists()

    saved = client.post(f"/api/studies/{study.pk}/boxes/", {"parent": ai_sr.pk, "boxes": [box]}, format="json")
    assert saved.status_code == 201, saved.content
    row = StructuredReport.objects.get(pk=saved.json()["id"])
    assert (row.source, row.parent_id, row.author_id) == ("reader", ai_sr.pk, client.user.pk)
    assert row.boxes[0]["xyxy"] == box["xyxy"]
    context = client.get(f"/api/viewer/studies/{study.study_uid}/").json()
    assert context["structured_report"]["id"] == row.pk  # the panels now show the reader's version
