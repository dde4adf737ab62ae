"""Contact sheet (one study per vendor, every series) and a gallery of the 17 conditions.

``python -m ml.data.synthetic.contact_sheet docs/images`` or
``python -m ml synth --contact-sheet docs/images``. Boxes are the ground-truth boxes of
the findings whose key slices are shown; they are drawn in red (uncertain: yellow).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ml.conditions import CONDITION_KEYS
from ml.data.synthetic.study import Study, StudyConfig, generate_study
from ml.data.synthetic.vendors import VENDORS

TILE = 200

# series in which a radiologist would look first for each condition
BEST_SERIES = {
    "canal_stenosis": "ax_t2",
    "foraminal_narrowing": "sag_t1",
    "subarticular_stenosis": "ax_t2",
    "disc_herniation": "sag_t2",
    "disc_height_loss": "sag_t2",
    "endplate_inflammation": "sag_stir",
    "synovial_cyst": "ax_t2",
    "spondylolisthesis": "sag_t2",
    "pars_defect": "sag_t1",
    "compression_deformity": "sag_t1",
    "acute_fracture": "sag_stir",
    "marrow_edema": "sag_stir",
    "hemangioma": "sag_t1",
    "osseous_lesion": "sag_t1",
    "epidural_lipomatosis": "sag_t1",
    "perineural_cyst": "sag_t2",
    "intradural_lesion": "sag_t2",
}


def _window(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, (0.5, 99.6))
    return np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def _tile(study: Study, skey: str, index: int, caption: str, conditions: tuple[str, ...] | None = None) -> Image.Image:
    s = next(s for s in study.series if s.key == skey)
    assert s.pixels is not None
    img = Image.fromarray(_window(s.pixels[index].astype(np.float32))).convert("RGB")
    sx, sy = TILE / img.width, TILE / img.height
    img = img.resize((TILE, TILE), Image.Resampling.BILINEAR)
    d = ImageDraw.Draw(img)
    for f in study.truth["findings"]:
        if f["label"] == 0 or (conditions and f["condition"] not in conditions):
            continue
        for ks in f["key_slices"].get(skey, []):
            if ks["index"] == index:
                x0, y0, x1, y1 = ks["box"]
                color = (255, 40, 40) if f["label"] == 1 else (255, 220, 0)
                d.rectangle([x0 * sx - 1, y0 * sy - 1, x1 * sx + 1, y1 * sy + 1], outline=color, width=1)
    d.rectangle([0, 0, TILE, 12], fill=(0, 0, 0))
    d.text((2, 0), caption[:34], fill=(255, 255, 255))
    return img


def _best_index(study: Study, skey: str, default: int) -> int:
    """The slice of a series holding the most key slices (so boxes appear)."""
    counts: dict[int, int] = {}
    for f in study.truth["findings"]:
        if f["label"] != 0:
            for ks in f["key_slices"].get(skey, [])[:1]:
                counts[ks["index"]] = counts.get(ks["index"], 0) + 1
    return max(counts, key=lambda k: (counts[k], -abs(k - default))) if counts else default


def contact_sheet(seed: int = 0, region: str = "lumbar") -> Image.Image:
    """One row per vendor; columns: every default series."""
    rows = []
    for i, ven in enumerate(VENDORS):
        st = generate_study(
            StudyConfig(seed=seed, index=i, region=region, vendor=ven, matrix_scale=0.75, prevalence="enriched"),
            None,
            keep_pixels=True,
        )
        tiles = []
        for s in st.series:
            mid = len(s.stack.slices) // 2
            k = _best_index(st, s.key, mid) if s.plane == "axial" else mid
            tiles.append(_tile(st, s.key, k, f"{ven} {s.description} #{k + 1}"))
        rows.append(tiles)
    sheet = Image.new("RGB", (TILE * max(len(r) for r in rows), TILE * len(rows)))
    for r, tiles in enumerate(rows):
        for c, t in enumerate(tiles):
            sheet.paste(t, (c * TILE, r * TILE))
    return sheet


def gallery(seed: int = 0, region: str = "lumbar") -> Image.Image:
    """One tile per condition: its best key slice in the series where it shows best."""
    tiles = []
    for i, key in enumerate(CONDITION_KEYS):
        st = generate_study(
            StudyConfig(seed=seed, index=100 + i, region=region, vendor="GE", matrix_scale=0.75, force=(key,)),
            None,
            keep_pixels=True,
        )
        f = next(f for f in st.truth["findings"] if f["condition"] == key and f["label"] == 1)
        skey = BEST_SERIES[key]
        ks = f["key_slices"].get(skey) or next(v for v in f["key_slices"].values() if v)
        if not f["key_slices"].get(skey):
            skey = next(k for k, v in f["key_slices"].items() if v)
        tiles.append(_tile(st, skey, ks[0]["index"], f"{key} {f['level']}", (key,)))
    cols = 6
    sheet = Image.new("RGB", (TILE * cols, TILE * ((len(tiles) + cols - 1) // cols)))
    for n, t in enumerate(tiles):
        sheet.paste(t, ((n % cols) * TILE, (n // cols) * TILE))
    return sheet


def write_all(out: Path, seed: int = 0, region: str = "lumbar") -> list[Path]:
    """Write synth_contact_sheet.png and synth_gallery.png into out."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "synth_contact_sheet.png", out / "synth_gallery.png"]
    # an adaptive 96-colour palette keeps each PNG well under 500 KB
    contact_sheet(seed, region).quantize(96).save(paths[0], optimize=True)
    gallery(seed, region).quantize(96).save(paths[1], optimize=True)
    return paths


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")):
        print(p)
