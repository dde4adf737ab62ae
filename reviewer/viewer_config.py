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

The same call picks how Cornerstone draws (``VIEWER_RENDERING``). On ``auto`` it asks the browser
which WebGL renderer it has: a software one (SwiftShader, llvmpipe, Microsoft's Basic Render
Driver: GPU-less VDI desktops and servers, headless Chromium) makes every WebGL draw a CPU
rasterisation followed by a read-back into the viewport's 2D canvas, which is slower for a stack
of MR slices than Cornerstone's own CPU path, so the viewer draws on the CPU there and on the GPU
everywhere else. The choice is recorded as ``window.config.spinereview.renderingUsed``. OHIF's
"fell back to CPU rendering" dialog is for a fallback nobody chose; it stays off when this choice
is ours (our mode's viewports are all stacks, which the CPU path draws in full).
"""

from __future__ import annotations

import json

OHIF_MODES_KEPT = ("@ohif/mode-longitudinal", "@ohif/mode-basic")
OHIF_EXTENSIONS_KEPT = ("@ohif/extension-default", "@ohif/extension-cornerstone")

_CONFIG_FUNCTION = """window.config = Object.assign(function spinereviewConfig() {
 const keep = (list, kept) =>
  Array.isArray(list) && list.splice(0, list.length, ...list.filter(id => kept.includes(id)))
 keep(window.modes, %s)
 keep(window.extensions, %s)
 // how Cornerstone draws: forced, or by the WebGL renderer the browser has (software -> CPU)
 const rendering = choice => {
  if (choice === 'cpu' || choice === 'gpu') return { backend: choice, renderer: null }
  try {
   const gl = document.createElement('canvas').getContext('webgl2')
   if (!gl) return { backend: 'cpu', renderer: null }
   const info = gl.getExtension('WEBGL_debug_renderer_info')
   const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER) || '')
   const lose = gl.getExtension('WEBGL_lose_context')
   if (lose) lose.loseContext()
   const software = /swiftshader|llvmpipe|softpipe|software|basic render driver/i.test(renderer)
   return { backend: software ? 'cpu' : 'gpu', renderer }
  } catch (e) {
   return { backend: 'gpu', renderer: null } // cannot tell (no DOM): Cornerstone decides
  }
 }
 const settings = spinereviewConfig.settings
 const ours = settings.spinereview || (settings.spinereview = {})
 const chosen = rendering(ours.rendering || 'auto')
 ours.renderingUsed = chosen.backend
 ours.webglRenderer = chosen.renderer
 settings.useCPURendering = chosen.backend === 'cpu'
 if (chosen.backend === 'cpu') settings.showCPUFallbackMessage = false
 return settings
}, window.config, { settings: window.config })
"""


def config_script(config: dict) -> str:
    """The body of ``/app-config.js`` for ``config`` (OHIF's ``window.config`` settings)."""
    return (
        "// Rendered by SpineReview (reviewer/viewer.py); do not edit by hand.\n"
        f"window.config = {json.dumps(config, indent=1)};\n"
        + _CONFIG_FUNCTION
        % (json.dumps(OHIF_MODES_KEPT), json.dumps(OHIF_EXTENSIONS_KEPT))
    )
