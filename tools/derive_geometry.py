"""Derive the simulator's nominal EPIC geometry from a real observation's event lists.

Usage: python tools/derive_geometry.py ../shared/data/xmm_a907_0201903501

For each MOS event list (SAS-made: RAWX/RAWY/DETX/DETY/X/Y columns):
  * per CCD, the affine RAW -> DET map: the CCD's centre in DET (arcsec) and the
    direction of its RAWX axis (0/90/180/270 deg);
  * the DET -> sky map: a rotation by PA_PNT + c and a mirror (its determinant is -1),
    and where the DET origin lands, as an offset from the pointing in the spacecraft
    frame (sky offset turned back by PA_PNT);
  * the field-stop circle fitted to the events (xmmext.events.footprint), in DET arcsec.
For pn (no events shared) the orientation of the CCD gaps in the pn eexpmap map
(a Radon-like search) gives c, and the centroid of its footprint the array's centre.
Prints the constants that xmmext/instrument.py keeps (NOMINAL_GEOMETRY).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmmext.events.footprint import geometry_from_events  # noqa: E402

DET_ARCSEC = 0.05


def rot(a_deg):
    a = np.deg2rad(a_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def mos(path: Path, cam: str) -> None:
    with fits.open(path) as h:
        d, hdr = h["EVENTS"].data, h["EVENTS"].header
    pa = float(hdr["PA_PNT"])
    detx, dety = d["DETX"].astype(float), d["DETY"].astype(float)
    x, y = d["X"].astype(float), d["Y"].astype(float)
    a = np.column_stack([detx, dety, np.ones(len(x))])
    mx, my = (np.linalg.lstsq(a, v, rcond=None)[0] for v in (x, y))
    m = np.array([mx[:2], my[:2]])
    c = (np.degrees(np.arctan2(m[1, 0], m[0, 0])) - pa + 180) % 360 - 180
    origin_sc = rot(-pa) @ (np.array([mx[2], my[2]]) - 25921.0) * DET_ARCSEC
    print(f"{cam}: DET->sky = R(PA {c:+.2f}) x mirror (det {np.linalg.det(m):+.3f}); DET origin at "
          f"({origin_sc[0]:.1f}, {origin_sc[1]:.1f})\" from the pointing (spacecraft frame)")
    for n in np.unique(d["CCDNR"]):
        on = d["CCDNR"] == n
        b = np.column_stack([d["RAWX"][on], d["RAWY"][on], np.ones(on.sum())]).astype(float)
        ax = np.linalg.lstsq(b, detx[on], rcond=None)[0]
        ay = np.linalg.lstsq(b, dety[on], rcond=None)[0]
        cx = (ax[0] * 300.5 + ax[1] * 300.5 + ax[2]) * DET_ARCSEC
        cy = (ay[0] * 300.5 + ay[1] * 300.5 + ay[2]) * DET_ARCSEC
        rawx_dir = np.degrees(np.arctan2(ay[0], ax[0])) % 360
        print(f"    CCD {n}: centre ({cx:7.1f}, {cy:7.1f})\" RAWX along {rawx_dir:5.1f} deg")
    geo = geometry_from_events(path, cam)
    fx, fy = np.linalg.solve(m, np.array(geo.fov_centre) - [mx[2], my[2]]) * DET_ARCSEC
    print(f"    FOV: centre ({fx:.1f}, {fy:.1f})\" in DET, radius {geo.fov_radius * DET_ARCSEC / 60:.3f}'")


def pn(folder: Path) -> None:
    (emap,) = folder.glob("*_pn_*0.50-2.00keVexpmap.fits")
    e = fits.open(emap)[0]
    pa = float(e.header["PA_PNT"])
    mask = (e.data > 0).astype(float)
    best = max((float(np.max((ndimage.uniform_filter1d(p, 9) - p)[20:-20])), a)
               for a in np.arange(0, 180, 0.5)
               for p in [ndimage.rotate(mask, a, reshape=False, order=1).sum(axis=0)])
    line_angle = (best[1] - 90.0) % 180          # direction of the strongest (long) gaps in X/Y
    img = fits.getheader(next(folder.glob("*_pn_*0.50-2.00keVimg.fits")))
    b = 1.0 / img["LTM1_1"]
    rows, cols = np.nonzero(mask)
    xs = (cols + 1 - img["LTV1"]) * b
    ys = (rows + 1 - img["LTV2"]) * b
    centre_sc = rot(-pa) @ (np.array([xs.mean(), ys.mean()]) - 25921.0) * DET_ARCSEC
    print(f"pn: long CCD gaps at {line_angle:.1f} deg in X/Y = PA {(line_angle - pa + 90) % 180 - 90:+.1f} "
          f"(mod 180); footprint centroid ({centre_sc[0]:.1f}, {centre_sc[1]:.1f})\" from the pointing "
          f"(spacecraft frame)")


def main(folder: str) -> None:
    f = Path(folder)
    for cam in ("mos1", "mos2"):
        (path,) = (f / "event").glob(f"{cam}*.fits")
        mos(path, cam)
    pn(f / "sas_images")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/xmm_a907_0201903501")
