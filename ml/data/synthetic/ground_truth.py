"""Key slices and bounding boxes of each finding in each series.

A finding's voxels (its ``Mask``) are sampled on every slice with the same thickness
profile as the image; a slice is a key slice where the finding covers at least a few
pixels with at least 30 % partial volume, and its box is the bounding box of those
pixels. Boxes are (x0, y0, x1, y1) in pixel columns/rows, inclusive of the covered
pixels' edges, and normalised by (cols, rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.data.synthetic.findings import Finding
from ml.data.synthetic.geometry import Grid
from ml.data.synthetic.render import SliceGeom, mask_sampler

MIN_PIXELS = 4
THRESHOLD = 0.3


def _mask_bounds(grid: Grid, f: Finding) -> tuple[np.ndarray, np.ndarray]:
    """Patient-space bounding box (lo, hi) of a finding's voxels."""
    assert f.mask is not None
    idx = np.argwhere(f.mask.m)
    lo = idx.min(axis=0) + [s.start for s in f.mask.sl]
    hi = idx.max(axis=0) + [s.start for s in f.mask.sl]
    o = np.array(grid.origin)
    lo_p = o + lo * grid.voxel  # (x, z, y)
    hi_p = o + hi * grid.voxel
    return np.array([lo_p[0], lo_p[2], lo_p[1]]), np.array([hi_p[0], hi_p[2], hi_p[1]])


def key_slices(grid: Grid, f: Finding, geoms: list[SliceGeom], sops: list[str]) -> list[dict[str, Any]]:
    """Key slices of finding f in one series, best (largest coverage) first."""
    assert f.mask is not None
    lo, hi = _mask_bounds(grid, f)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    sampler = mask_sampler(grid, f.mask.sl, f.mask.m)
    out: list[dict[str, Any]] = []
    for k, g in enumerate(geoms):
        _, _, dist = g.to_pixel(corners)
        reach = g.thickness / 2 + grid.voxel
        if dist.min() > reach or dist.max() < -reach:
            continue
        # only the pixels the finding's box can reach (its projection plus interpolation)
        r, c, _ = g.to_pixel(corners)
        mr, mc = 2 * grid.voxel / g.dr + 2, 2 * grid.voxel / g.dc + 2
        r0, r1 = max(0, int(np.floor(r.min() - mr))), min(g.rows, int(np.ceil(r.max() + mr)) + 1)
        c0, c1 = max(0, int(np.floor(c.min() - mc))), min(g.cols, int(np.ceil(c.max() + mc)) + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        cov = sampler.slice(g, (r0, r1, c0, c1))  # fraction of the finding in each pixel
        hit = cov >= THRESHOLD
        n = int(hit.sum())
        if n < MIN_PIXELS:
            continue
        rr = np.flatnonzero(hit.any(axis=1))
        cc = np.flatnonzero(hit.any(axis=0))
        x0, y0, x1, y1 = c0 + int(cc[0]), r0 + int(rr[0]), c0 + int(cc[-1]) + 1, r0 + int(rr[-1]) + 1
        out.append(
            {
                "index": k,
                "instance_number": k + 1,
                "sop_instance_uid": sops[k],
                "pixels": n,
                "box": [x0, y0, x1, y1],
                "box_norm": [
                    round(x0 / g.cols, 5),
                    round(y0 / g.rows, 5),
                    round(x1 / g.cols, 5),
                    round(y1 / g.rows, 5),
                ],
            }
        )
    out.sort(key=lambda d: -d["pixels"])
    return out
