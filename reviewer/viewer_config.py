"""The script ``/app-config.js`` that OHIF runs before its bundle: ``window.config``, and the trim
of OHIF's built-in modes and default extensions to those our mode uses.

Why the trim: OHIF 3.13.2 imports every mode its build lists (TMTV, segmentation, microscopy,
pre-clinical 4D, ultrasound B-lines besides longitudinal and basic) and its default extensions
(ultrasound B-lines besides default and cornerstone) before any route renders, so their chunks are
fetched, parsed and set up before our mode's first image, for studies this viewer never shows.
Our mode builds on longitudinal; basic shares its chunk. OHIF's study list (shown only when the
app origin is not configured) then offers these two and ours.

How: the config in OHIF's function form, which its ``appInit`` calls once, after the bundle has
put the build's lists on ``window.modes`` / ``window.extensions`` (the same arrays it imports
next), so they are trimmed in place there. Every setting stays readable on ``window.config``.
"""

from __future__ import annotations

import json

OHIF_MODES_KEPT = ("@ohif/mode-longitudinal", "@ohif/mode-basic")
OHIF_EXTENSIONS_KEPT = ("@ohif/extension-default", "@ohif/extension-cornerstone")

_TRIM = """window.config = Object.assign(function spinereviewConfig() {
 const keep = (list, kept) =>
  Array.isArray(list) && list.splice(0, list.length, ...list.filter(id => kept.includes(id)))
 keep(window.modes, %s)
 keep(window.extensions, %s)
 return spinereviewConfig.settings
}, window.config, { settings: window.config })
"""


def config_script(config: dict) -> str:
    """The body of ``/app-config.js`` for ``config`` (OHIF's ``window.config`` settings)."""
    return (
        "// Rendered by SpineReview (reviewer/viewer.py); do not edit by hand.\n"
        f"window.config = {json.dumps(config, indent=1)};\n"
        + _TRIM
        % (json.dumps(OHIF_MODES_KEPT), json.dumps(OHIF_EXTENSIONS_KEPT))
    )
