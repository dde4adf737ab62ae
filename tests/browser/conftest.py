"""Browser tests: the real app (pytest-django's live server, same process and database), the real
Orthanc, OHIF's prebuilt viewer with our extension, and headless Chromium driven by Node's
playwright-core. The viewer origin is the live server reached by another host name
(127.0.0.1 vs localhost), exactly as a second host name serves it in development."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.browser import support


def _require(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("SPINEREVIEW_REQUIRE_SERVICES") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def viewer_build() -> None:
    from django.conf import settings

    _require((Path(settings.VIEWER_OHIF_DIST) / "index.html").is_file(), "OHIF dist missing: run scripts/setup.sh")
    _require((Path(settings.VIEWER_EXTENSION_DIST) / "extension.js").is_file(), "extension not built: scripts/setup.sh")
    _require((support.EXTENSION_DIR / "node_modules" / "playwright-core").is_dir(), "playwright-core missing: setup.sh")
    support.chromium()
    support.node()


@pytest.fixture(scope="session")
def synthetic_study_dir(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return support.synth_study(tmp_path_factory.mktemp("viewer-synth"))


@pytest.fixture
def viewer_urls(live_server, settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The app at http://localhost:PORT, the viewer origin at http://127.0.0.1:PORT."""
    port = live_server.url.rsplit(":", 1)[1]
    app, viewer = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    settings.VIEWER_ORIGIN = viewer
    settings.VIEWER_APP_ORIGIN = app
    settings.VIEWER_POLL_S = 1
    return {"app": app, "viewer": viewer}


@pytest.fixture
def screenshots_dir(request) -> Path:  # type: ignore[no-untyped-def]
    root = Path(os.environ.get("SPINEREVIEW_SCREENSHOTS", support.ROOT / "var" / "screenshots"))
    folder = root / request.node.name
    shutil.rmtree(folder, ignore_errors=True)  # this run's screenshots only
    return folder
