"""The extension's TypeScript type-checks (strict) and builds into the two ES modules OHIF loads."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.browser import support

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def tools() -> None:
    if not (support.EXTENSION_DIR / "node_modules" / ".bin" / "tsc").exists():
        if os.environ.get("SPINEREVIEW_REQUIRE_SERVICES") == "1":
            pytest.fail("ohif-extension/node_modules missing: run scripts/setup.sh")
        pytest.skip("ohif-extension/node_modules missing: run scripts/setup.sh")


def test_extension_type_checks_strictly(tools) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [support.node(), "node_modules/typescript/bin/tsc", "-p", "."], cwd=support.EXTENSION_DIR,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_extension_builds_the_extension_and_mode_modules(tools, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [support.node(), "build.mjs", "--quiet"], cwd=support.EXTENSION_DIR, capture_output=True, text=True,
        timeout=120, env={**os.environ, "SPINEREVIEW_VIEWER_EXTENSION_DIST": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    extension = (tmp_path / "extension.js").read_text()
    mode = (tmp_path / "mode.js").read_text()
    assert "export {" in extension
    assert "export {" in mode
    assert "@ohif/mode-longitudinal" in mode  # built on the longitudinal mode, loaded at runtime
    assert "rspackChunk" in "".join(p.read_text() for p in tmp_path.rglob("*.js"))  # the guarded technique
