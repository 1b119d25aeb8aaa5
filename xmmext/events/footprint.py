"""Where one camera of one observation looked: CCD footprints on the sky, learnt from the data.

Real XMM data are the reference for geometry, not a fixed layout (DESIGN.md):

* each CCD's RAW -> sky X/Y map is fitted (least squares, affine) to the events' own
  RAWX/RAWY/X/Y columns, so the roll, the CCD arrangement, the chip gaps and any
  missing CCD come from the observation; a CCD without events took no data;
* the field of view is the circle fitted to the outer envelope of the in-FOV events
  (the field stop is circular on the detector, and DET -> sky is a rotation for a
  stable pointing, so it is a circle on the sky too), corrected for the envelope's
  inward bias from the local event density;
* bad pixels and columns are the ``BADPIXnn`` extensions (RAWX, RAWY, YEXTENT);
* the optical axis (vignetting centre) is the pointing plus each camera's fixed offset
  in the spacecraft frame, turned by ``PA_PNT`` (:data:`xmmext.instrument.OPTICAL_AXIS_OFFSET`).

Checked against SAS ``eexpmap`` on the shared real observation (tests/test_real_data.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

import xmmext.instrument as ins
from xmmext.core.errors import DataError

__all__ = ["MIN_EVENTS_PER_CCD", "CcdMap", "Geometry", "ccd_livetimes", "camera_livetime", "optical_axis",
           "fit_ccd_matrix", "bad_pixel_masks", "drop_empty_edges", "fit_fov_circle", "geometry_from_events"]

MIN_EVENTS_PER_CCD = 30        # fewer than this: the CCD's map cannot be fitted (treated as off)
_FOV_AZIMUTH_BINS = 72


@dataclass
class CcdMap:
    """Affine RAW -> sky map of one CCD and its RAW pixel mask (True = usable)."""
    ccdnr: int
    matrix: np.ndarray             # 2x3: [X, Y] = matrix @ [RAWX, RAWY, 1]
    good: np.ndarray               # (ny, nx) bool, index [RAWY-1, RAWX-1]
    n_events: int

    @property
    def nx(self) -> int:
        return self.good.shape[1]

    @property
    def ny(self) -> int:
        return self.good.shape[0]

    def sky_to_raw(self, x, y):
        """Fractional RAWX, RAWY (pixel centres are integers) of sky positions."""
        a = self.matrix[:, :2]
        inv = np.linalg.inv(a)
        dx = np.asarray(x, float) - self.matrix[0, 2]
        dy = np.asarray(y, float) - self.matrix[1, 2]
        return inv[0, 0] * dx + inv[0, 1] * dy, inv[1, 0] * dx + inv[1, 1] * dy

    def bounding_box(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(x range, y range) in sky pixels of the CCD's pixel area."""
        rx = np.array([0.5, self.nx + 0.5, 0.5, self.nx + 0.5])
        ry = np.array([0.5, 0.5, self.ny + 0.5, self.ny + 0.5])
        x = self.matrix[0, 0] * rx + self.matrix[0, 1] * ry + self.matrix[0, 2]
        y = self.matrix[1, 0] * rx + self.matrix[1, 1] * ry + self.matrix[1, 2]
        return (float(x.min()), float(x.max())), (float(y.min()), float(y.max()))

    def covers(self, x, y) -> np.ndarray:
        """True where sky positions fall on a usable pixel of this CCD."""
        rx, ry = self.sky_to_raw(x, y)
        ix = np.floor(rx + 0.5).astype(np.int64) - 1
        iy = np.floor(ry + 0.5).astype(np.int64) - 1
        on = (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny)
        out = np.zeros(np.shape(rx), bool)
        out[on] = self.good[iy[on], ix[on]]
        return out


@dataclass
class Geometry:
    """Footprint of one camera in one observation (sky X/Y pixels of the event file)."""
    camera: str
    ccds: dict[int, CcdMap]
    fov_centre: tuple[float, float]
    fov_radius: float              # sky pixels
    optical_axis: tuple[float, float]
    pa_pnt: float
    notes: list[str] = field(default_factory=list)

    def in_fov(self, x, y) -> np.ndarray:
        return np.hypot(np.asarray(x, float) - self.fov_centre[0],
                        np.asarray(y, float) - self.fov_centre[1]) <= self.fov_radius

    def ccd_at(self, x, y) -> np.ndarray:
        """CCD number under each sky position (0 = gap, bad pixel, missing CCD, outside FOV).
        Each CCD is tested only on the positions inside its bounding box."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        out = np.zeros(x.shape, np.int16)
        for n, c in self.ccds.items():
            (x0, x1), (y0, y1) = c.bounding_box()
            box = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
            if box.any():
                hit = np.zeros(x.shape, bool)
                hit[box] = c.covers(x[box], y[box])
                out[hit] = n
        out[~self.in_fov(x, y)] = 0
        return out

    def exposed(self, x, y) -> np.ndarray:
        return self.ccd_at(x, y) > 0

    def off_axis_arcmin(self, x, y) -> np.ndarray:
        return np.hypot(np.asarray(x, float) - self.optical_axis[0],
                        np.asarray(y, float) - self.optical_axis[1]) * ins.SKY_PIX_ARCSEC / 60.0

    def to_json(self) -> dict:
        return {"ccds": sorted(self.ccds), "fov_centre": list(self.fov_centre),
                "fov_radius_arcmin": self.fov_radius * ins.SKY_PIX_ARCSEC / 60.0,
                "optical_axis": list(self.optical_axis), "pa_pnt": self.pa_pnt, "notes": self.notes}


def ccd_livetimes(header) -> dict[int, float]:
    """Live time per CCD (s) from LIVETInn, else ONTIMEnn, of an EVENTS header."""
    out: dict[int, float] = {}
    for prefix in ("LIVETI", "ONTIME"):
        for k in header:
            m = re.match(rf"^{prefix}(\d\d)$", k)
            if m and int(m.group(1)) not in out:
                out[int(m.group(1))] = float(header[k])
        if out:
            break
    return out


def camera_livetime(header) -> float:
    """The camera's live time (s): LIVETIME, else ONTIME, else EXPOSURE."""
    for k in ("LIVETIME", "ONTIME", "EXPOSURE"):
        if k in header and float(header[k]) > 0:
            return float(header[k])
    raise KeyError("no LIVETIME/ONTIME/EXPOSURE keyword")


# --- building it from an event file --------------------------------------------------
def optical_axis(camera: str, pa_pnt: float) -> tuple[float, float]:
    """Sky X/Y of the camera's optical axis for a roll angle (deg)."""
    off = np.asarray(ins.OPTICAL_AXIS_OFFSET[camera], float) / ins.SKY_PIX_ARCSEC
    a = np.deg2rad(pa_pnt)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dx, dy = rot @ off
    return ins.SKY_REF_PIX + float(dx), ins.SKY_REF_PIX + float(dy)


def fit_ccd_matrix(rawx, rawy, x, y) -> np.ndarray:
    """Least-squares affine RAW -> sky map (2x3) from events of one CCD."""
    a = np.column_stack([np.asarray(rawx, float), np.asarray(rawy, float), np.ones(len(rawx))])
    mx = np.linalg.lstsq(a, np.asarray(x, float), rcond=None)[0]
    my = np.linalg.lstsq(a, np.asarray(y, float), rcond=None)[0]
    return np.vstack([mx, my])


def bad_pixel_masks(hdul: fits.HDUList, camera: str) -> dict[int, np.ndarray]:
    """{ccd: (ny, nx) good-pixel mask} from the BADPIXnn extensions (all usable if none)."""
    nx, ny = ins.RAW_SHAPE[camera]
    masks: dict[int, np.ndarray] = {}
    for h in hdul[1:]:
        m = re.match(r"^BADPIX(\d\d)$", h.name or "")
        if not m or h.data is None:
            continue
        ccd = int(h.header.get("CCDID", m.group(1)))
        good = masks.setdefault(ccd, np.ones((ny, nx), bool))
        names = [n.upper() for n in h.columns.names]
        if "RAWX" not in names or "RAWY" not in names:
            continue
        ext = np.asarray(h.data["YEXTENT"], int) if "YEXTENT" in names else np.ones(len(h.data), int)
        for rx, ry, ey in zip(np.asarray(h.data["RAWX"], int), np.asarray(h.data["RAWY"], int), ext):
            if 1 <= rx <= nx:
                good[max(ry - 1, 0):min(ry - 1 + max(ey, 1), ny), rx - 1] = False
    return masks


def drop_empty_edges(ccd: "CcdMap", rawx, rawy, in_fov, depth: int = 2, min_expected: float = 10.0) -> str:
    """Mark the outer RAW columns/rows of a CCD unusable where the event selection left
    (almost) no events: fewer than 10% of what the CCD's in-FOV event density predicts
    for the line's in-FOV pixels, when that prediction is at least ``min_expected``.
    Selections that drop events at CCD borders (FLAG==0) remove those lines from the data,
    so the footprint loses them too; lists that keep them keep them; lines outside the FOV
    are not judged (they hold no in-FOV events by construction). Returns what was dropped."""
    good = ccd.good
    ny, nx = good.shape
    ix = np.clip(np.asarray(rawx, int) - 1, 0, nx - 1)
    iy = np.clip(np.asarray(rawy, int) - 1, 0, ny - 1)
    gx, gy = np.meshgrid(np.arange(1, nx + 1), np.arange(1, ny + 1))
    sx = ccd.matrix[0, 0] * gx + ccd.matrix[0, 1] * gy + ccd.matrix[0, 2]
    sy = ccd.matrix[1, 0] * gx + ccd.matrix[1, 1] * gy + ccd.matrix[1, 2]
    fov = in_fov(sx, sy) & good
    interior = np.zeros_like(fov)
    interior[depth:ny - depth, depth:nx - depth] = True
    n_int = np.count_nonzero(fov & interior)
    if n_int == 0:
        return ""
    inside = (ix >= depth) & (ix < nx - depth) & (iy >= depth) & (iy < ny - depth)
    density = np.count_nonzero(inside) / n_int
    out = []
    for name, idx, n, axis in (("RAWX", ix, nx, 1), ("RAWY", iy, ny, 0)):
        per_line = np.bincount(idx, minlength=n).astype(float)
        pix_in_fov = fov.sum(axis=0 if axis == 1 else 1)
        for k in list(range(depth)) + list(range(n - depth, n)):
            expected = density * pix_in_fov[k]
            if expected >= min_expected and per_line[k] < 0.1 * expected:
                if axis == 1:
                    good[:, k] = False
                else:
                    good[k, :] = False
                out.append(f"{name}={k + 1}")
    return ", ".join(out)


def fit_fov_circle(x, y, start: tuple[float, float], at_ccd_edge=None) -> tuple[float, float, float]:
    """Circle (cx, cy, r) through the outer envelope of event positions (sky pixels).

    Per azimuth bin the outermost event is found; bins cut short by a CCD edge or a
    missing CCD lie inside the circle and are rejected iteratively (robust loss). The
    outermost event of a bin sits on average 1/(density per unit radius) inside the
    true edge: that mean gap is added back. ``at_ccd_edge`` marks events on the outer RAW
    rows/columns of their CCD: a bin whose outermost event is one of them ends at the
    array's edge (pn's straight sides), not at the field stop, and is left out.
    """
    from scipy.optimize import least_squares
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    c = np.array(start, float)
    p = np.array([c[0], c[1], 0.0])
    keep_pts = None
    edge = np.zeros(len(x), bool) if at_ccd_edge is None else np.asarray(at_ccd_edge, bool)
    for _ in range(4):
        ex, ey, gap, sel = _envelope(x, y, c)
        free = ~edge[sel]
        if np.count_nonzero(free) >= 8:
            ex, ey, gap = ex[free], ey[free], gap[free]
        keep = np.ones(len(ex), bool)
        r0 = float(np.median(np.hypot(ex - c[0], ey - c[1])))
        p = np.array([c[0], c[1], r0])
        for _ in range(5):
            res = least_squares(lambda q: np.hypot(ex[keep] - q[0], ey[keep] - q[1]) - q[2], p,
                                loss="soft_l1", f_scale=100.0)
            p = res.x
            d = np.hypot(ex - p[0], ey - p[1]) - p[2]
            scale = max(float(np.median(np.abs(d[keep]))), 60.0)
            keep = d > -4.0 * scale
        c = p[:2]
        keep_pts = (keep, gap)
    keep, gap = keep_pts
    bias = float(np.median(gap[keep])) if keep.any() else 0.0
    return float(p[0]), float(p[1]), float(p[2] + bias)


def _envelope(x, y, c):
    r = np.hypot(x - c[0], y - c[1])
    phi = np.arctan2(y - c[1], x - c[0])
    k = np.minimum(((phi + np.pi) / (2 * np.pi) * _FOV_AZIMUTH_BINS).astype(int), _FOV_AZIMUTH_BINS - 1)
    order = np.lexsort((r, k))
    ks, rs = k[order], r[order]
    last = np.r_[ks[1:] != ks[:-1], True]
    sel = order[last]
    # mean gap to the edge: events per unit radius in the outer 1200 sky pixels (1')
    gap = np.empty(len(sel))
    for i, j in enumerate(sel):
        inbin = ks == k[j]
        near = np.count_nonzero(rs[inbin] > r[j] - 1200.0)
        gap[i] = 1200.0 / max(near, 1)
    return x[sel], y[sel], gap, sel


def geometry_from_events(path: str | Path, camera: str, ccds: list[int] | None = None) -> Geometry:
    """Learn the camera's footprint from an event list (cleaned or raw).

    ``ccds`` limits the CCDs to those that took data (e.g. those with good time).
    In-FOV events are those without the out-of-FOV flag; corner events (raw lists)
    still fix the CCD maps but not the FOV circle.
    """
    from xmmext.events.reader import open_fits
    path = Path(path)
    with open_fits(path) as hdul:
        ev = hdul["EVENTS"]
        names = [n.upper() for n in ev.columns.names]
        for col in ("RAWX", "RAWY", "X", "Y", "CCDNR"):
            if col not in names:
                raise DataError(f"event list has no {col} column: the CCD footprint cannot be derived", path)
        d = ev.data
        rawx, rawy = np.asarray(d["RAWX"], float), np.asarray(d["RAWY"], float)
        x, y = np.asarray(d["X"], float), np.asarray(d["Y"], float)
        ccdnr = np.asarray(d["CCDNR"], int)
        flag = np.asarray(d["FLAG"], np.int64) if "FLAG" in names else np.zeros(len(x), np.int64)
        pa = float(ev.header.get("PA_PNT", hdul[0].header.get("PA_PNT", 0.0)))
        masks = bad_pixel_masks(hdul, camera)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    nx, ny = ins.RAW_SHAPE[camera]
    maps: dict[int, CcdMap] = {}
    notes = []
    wanted = set(ccds) if ccds is not None else set(np.unique(ccdnr[ok]).tolist())
    for n in sorted(wanted):
        on = ok & (ccdnr == n)
        if np.count_nonzero(on) < MIN_EVENTS_PER_CCD:
            notes.append(f"CCD {n}: {int(on.sum())} events, too few to place it; treated as off")
            continue
        good = masks.get(n, np.ones((ny, nx), bool)).copy()
        maps[n] = CcdMap(n, fit_ccd_matrix(rawx[on], rawy[on], x[on], y[on]), good, int(on.sum()))
    if not maps:
        raise DataError("no CCD has enough events to place it on the sky", path)
    infov = ok & ((flag & ins.OUT_OF_FOV_FLAG) == 0) & np.isin(ccdnr, list(maps))
    axis = optical_axis(camera, pa)
    edge = np.zeros(len(x), bool)
    for n in maps:
        on = ccdnr == n
        edge[on] = (rawx[on] <= 2) | (rawy[on] <= 2) | (rawx[on] >= nx - 1) | (rawy[on] >= ny - 1)
    cx, cy, r = fit_fov_circle(x[infov], y[infov], axis, edge[infov])
    rmax = ins.FOV_RADIUS_ARCMIN * 60.0 / ins.SKY_PIX_ARCSEC * 1.05
    if not (0.5 * rmax < r < 1.2 * rmax):
        notes.append(f"FOV fit gave {r * ins.SKY_PIX_ARCSEC / 60:.1f}'; nominal {ins.FOV_RADIUS_ARCMIN}' used")
        cx, cy, r = axis[0], axis[1], ins.FOV_RADIUS_ARCMIN * 60.0 / ins.SKY_PIX_ARCSEC
    geo = Geometry(camera, maps, (cx, cy), r, axis, pa, notes)
    for n, c in maps.items():
        on = infov & (ccdnr == n)
        dropped = drop_empty_edges(c, rawx[on], rawy[on], geo.in_fov)
        if dropped:
            notes.append(f"CCD {n}: edge lines without events left out ({dropped})")
    return geo
