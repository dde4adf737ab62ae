"""Voxel grid and the curvilinear spine frame in which anatomy is described.

Anatomy is drawn in coordinates that follow the spine: ``s`` is the position along the
spinal curve (mm, increasing caudally), ``v`` the antero-posterior offset from the
posterior wall of the vertebral bodies (mm, positive = posterior) and ``x`` the patient
left-right coordinate. Drawing a vertebra as "|s - s_c| < h/2" in this frame makes
lordosis, kyphosis, wedge fractures and slips fall out of the curve itself: a curve bent
forward over one vertebra *is* an anterior wedge, because the anterior side of a bent
frame is shorter.

Patient coordinates are DICOM LPS (x to the patient's left, y posterior, z head).
The label volume is stored with axes ``(x, z, y)`` so that a sagittal plane is one
contiguous ``(z, y)`` slab.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Grid:
    """Axis-aligned voxel grid; index i of an axis sits at ``origin + i * voxel`` (mm)."""

    voxel: float
    origin: tuple[float, float, float]  # (x0, z0, y0) in mm
    shape: tuple[int, int, int]  # (nx, nz, ny)

    def axis(self, k: int) -> np.ndarray:
        """Coordinates (mm) of axis k (0 = x, 1 = z, 2 = y): shape (n_k,)."""
        return (self.origin[k] + self.voxel * np.arange(self.shape[k])).astype(np.float32)

    @overload
    def to_index(self, coord: np.ndarray, k: int) -> np.ndarray: ...
    @overload
    def to_index(self, coord: float, k: int) -> float: ...
    def to_index(self, coord: np.ndarray | float, k: int) -> np.ndarray | float:
        """Continuous index along axis k of patient coordinate(s) ``coord``.

        An array gives an array of the same shape; a scalar gives a scalar (numpy float64).
        """
        return (np.asarray(coord) - self.origin[k]) / self.voxel


@dataclass
class Centerline:
    """Dense samples of the spinal curve in the sagittal (y, z) plane.

    ``s`` is the construction parameter (arc length before slips are applied); ``pts``
    holds (y, z) of each sample, ``normal`` the unit posterior direction at it.
    """

    s: np.ndarray  # (n,)
    pts: np.ndarray  # (n, 2) as (y, z)
    normal: np.ndarray  # (n, 2) unit, posterior
    tangent: np.ndarray  # (n, 2) unit, caudal

    @classmethod
    def build(
        cls,
        s_ctrl: np.ndarray,
        theta_ctrl_deg: np.ndarray,
        s_max: float,
        slips: Sequence[tuple[float, float, float]] = (),
        kinks: Sequence[tuple[float, float, float]] = (),
        ds: float = 0.5,
    ) -> Centerline:
        """Integrate a tangent-angle profile into a curve.

        ``theta`` is the angle of the caudal tangent from straight down, positive when
        the curve heads posteriorly (lordosis below its apex, sacral slope).
        ``slips``: (s_start, s_end, mm) ramps an anterior offset of ``mm`` across
        [s_start, s_end] for everything cranial to it (spondylolisthesis).
        ``kinks``: (s_start, s_end, degrees) adds local kyphotic bending (wedge fracture).
        """
        s = np.arange(-40.0, s_max + 40.0, ds)
        theta = np.interp(s, s_ctrl, theta_ctrl_deg)
        theta = gaussian_filter1d(theta, 12.0 / ds, mode="nearest")
        dtheta = np.zeros_like(s)
        for s0, s1, deg in kinks:
            inside = (s >= s0) & (s <= s1)
            dtheta[inside] += deg / max(inside.sum(), 1)
        # Kyphotic bending turns the caudal tangent posteriorly when moving caudally;
        # accumulate from the bottom so everything cranial to the kink rotates.
        theta = np.deg2rad(theta + np.cumsum(dtheta[::-1])[::-1])
        tan = np.stack([np.sin(theta), -np.cos(theta)], axis=1)  # (n, 2) (y, z)
        pts = np.concatenate([[[0.0, 0.0]], np.cumsum(tan[:-1] * ds, axis=0)])
        nrm = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        offset = np.zeros_like(s)
        for s0, s1, mm in slips:
            ramp = np.clip((s1 - s) / max(s1 - s0, 1e-3), 0.0, 1.0)  # 1 cranial, 0 caudal
            offset -= mm * ramp
        pts = pts + offset[:, None] * nrm
        # Recompute tangent/normal from the displaced polyline.
        d = np.gradient(pts, axis=0)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
        nrm *= np.sign(nrm[:, :1] + 1e-9)  # posterior has +y
        return cls(s=s, pts=pts, normal=nrm, tangent=d)

    def translate(self, dy: float, dz: float) -> None:
        self.pts = self.pts + np.array([dy, dz])

    def point(self, s: float) -> np.ndarray:
        """(y, z) of the curve at parameter s."""
        return np.array([np.interp(s, self.s, self.pts[:, 0]), np.interp(s, self.s, self.pts[:, 1])])

    def frame(self, s: float) -> tuple[np.ndarray, np.ndarray]:
        """(caudal tangent, posterior normal) at s, each (y, z)."""
        i = int(np.clip(np.searchsorted(self.s, s), 0, len(self.s) - 1))
        return self.tangent[i], self.normal[i]

    def maps(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """Curvilinear coordinates (s, v) of every (z, y) grid node: each (nz, ny)."""
        z = grid.axis(1)
        y = grid.axis(2)
        yy, zz = np.meshgrid(y, z)  # (nz, ny)
        q = np.stack([yy.ravel(), zz.ravel()], axis=1)
        _, idx = cKDTree(self.pts).query(q)
        s_map = self.s[idx].reshape(zz.shape)
        v_map = np.einsum("ij,ij->i", q - self.pts[idx], self.normal[idx]).reshape(zz.shape)
        return s_map.astype(np.float32), v_map.astype(np.float32)


@dataclass
class Block:
    """A sub-box of the volume with local curvilinear coordinates, for cheap painting."""

    sl: tuple[slice, slice, slice]
    s: np.ndarray  # (1, nz', ny')
    v: np.ndarray  # (1, nz', ny')
    x: np.ndarray  # (nx', 1, 1)
    z: np.ndarray  # (1, nz', 1) patient z
    y: np.ndarray  # (1, 1, ny') patient y

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.x.shape[0], self.s.shape[1], self.s.shape[2])


class Frame:
    """The grid plus its curvilinear maps; hands out Blocks for ranges of (s, v, x)."""

    def __init__(self, grid: Grid, curve: Centerline) -> None:
        self.grid = grid
        self.curve = curve
        self.s_map, self.v_map = curve.maps(grid)
        self.x = grid.axis(0)
        self.z = grid.axis(1)
        self.y = grid.axis(2)

    def block(self, s_rng: tuple[float, float], v_rng: tuple[float, float], x_rng: tuple[float, float]) -> Block | None:
        """Block covering s in s_rng, v in v_rng, x in x_rng; None if empty."""
        m = (self.s_map >= s_rng[0]) & (self.s_map <= s_rng[1]) & (self.v_map >= v_rng[0]) & (self.v_map <= v_rng[1])
        zi = np.flatnonzero(m.any(axis=1))
        yi = np.flatnonzero(m.any(axis=0))
        xi = np.flatnonzero((self.x >= x_rng[0]) & (self.x <= x_rng[1]))
        if not len(zi) or not len(yi) or not len(xi):
            return None
        sl = (
            slice(int(xi[0]), int(xi[-1]) + 1),
            slice(int(zi[0]), int(zi[-1]) + 1),
            slice(int(yi[0]), int(yi[-1]) + 1),
        )
        return Block(
            sl=sl,
            s=self.s_map[sl[1], sl[2]][None],
            v=self.v_map[sl[1], sl[2]][None],
            x=self.x[sl[0]][:, None, None],
            z=self.z[sl[1]][None, :, None],
            y=self.y[sl[2]][None, None, :],
        )


@dataclass
class Mask:
    """A boolean region of the volume stored compactly as a sub-box (ground truth)."""

    sl: tuple[slice, slice, slice]
    m: np.ndarray  # bool, shape of the sub-box

    @classmethod
    def from_block(cls, block: Block, m: np.ndarray) -> Mask:
        return cls(block.sl, np.broadcast_to(m, block.shape).copy())

    def union(self, other: Mask) -> Mask:
        lo = [min(a.start, b.start) for a, b in zip(self.sl, other.sl, strict=True)]
        hi = [max(a.stop, b.stop) for a, b in zip(self.sl, other.sl, strict=True)]
        out = np.zeros([h - lo_ for lo_, h in zip(lo, hi, strict=True)], bool)
        for mk in (self, other):
            sub = tuple(slice(s.start - lo_, s.stop - lo_) for s, lo_ in zip(mk.sl, lo, strict=True))
            out[sub] |= mk.m
        z, y, x = (slice(a, b) for a, b in zip(lo, hi, strict=True))
        return Mask((z, y, x), out)

    def voxel_count(self) -> int:
        return int(self.m.sum())
