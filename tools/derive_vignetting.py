"""Derive the vignetting model of xmmext.instrument from SAS eexpmap exposure maps.

Usage: python tools/derive_vignetting.py ../shared/data/xmm_a907_0201903501/sas_images

For each camera, the two band maps (0.5-2 and 2-10 keV) are fitted together with
  map = N * (1 + (theta / theta0_band)^2)^(-k_band),
theta measured from a common vignetting centre that is fitted too (eexpmap's XCEN/YCEN
keywords are rounded and leave 6-8% azimuthal residuals for MOS; the fitted centre
leaves 2-3%, the rest is the RGA's azimuthal pattern, not modelled). Only pixels whose
3x3 neighbourhood is exposed and flat to 3% are used (no chip gaps, bad columns or
FOV edge). The centre is printed as an offset from the pointing in the spacecraft
frame (sky offset turned back by PA_PNT), which is what instrument.py stores.
Prints the constants; instrument.py holds the values from the shared A907 maps.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage
from scipy.optimize import least_squares

SKY_PIX_ARCSEC = 0.05
SKY_REF_PIX = 25921.0
BANDS = (("0.50-2.00", 500, 2000), ("2.00-10.00", 2000, 10000))


def flat_pixels(img_header, data):
    b = 1.0 / img_header["LTM1_1"]
    x0, y0 = (0.5 - img_header["LTV1"]) * b, (0.5 - img_header["LTV2"]) * b
    n = data.shape[0]
    xx, yy = np.meshgrid(x0 + (np.arange(n) + 0.5) * b, y0 + (np.arange(n) + 0.5) * b)
    hi, lo = ndimage.maximum_filter(data, 3), ndimage.minimum_filter(data, 3)
    ok = (lo > 0) & ((hi - lo) < 0.03 * hi)
    return xx[ok], yy[ok], data[ok]


def fit_camera(folder: Path, cam: str):
    sets = []
    for tag, lo, hi in BANDS:
        (emap,) = folder.glob(f"*_{cam}_*{tag}keVexpmap.fits")
        (img,) = folder.glob(f"*_{cam}_*{tag}keVimg.fits")
        e = fits.open(emap)[0]
        x, y, v = flat_pixels(fits.getheader(img), e.data.astype(float))
        sets.append((x, y, v, 0.5 * (lo + hi) / 1000.0))
        pa = float(e.header["PA_PNT"])
    x0, y0 = np.mean(sets[0][0]), np.mean(sets[0][1])

    def resid(p):
        cx, cy, n = p[:3]
        out = []
        for i, (x, y, v, _) in enumerate(sets):
            th = np.hypot(x - cx, y - cy) * SKY_PIX_ARCSEC / 60.0
            out.append((n * (1 + (th / p[3 + 2 * i]) ** 2) ** (-p[4 + 2 * i]) - v) / v)
        return np.concatenate(out)

    p0 = [x0, y0, max(s[2].max() for s in sets), 12.0, 1.2, 12.0, 1.4]
    p = least_squares(resid, p0, x_scale=[100, 100, 100, 1, 0.1, 1, 0.1]).x
    rms = float(np.std(resid(p)))
    a = np.deg2rad(-pa)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    off = rot @ (np.array([p[0], p[1]]) - SKY_REF_PIX) * SKY_PIX_ARCSEC
    bands = [(s[3], p[3 + 2 * i], p[4 + 2 * i]) for i, s in enumerate(sets)]
    return off, p[2], bands, rms


def main(folder: str) -> None:
    for cam in ("mos1", "mos2", "pn"):
        off, n, bands, rms = fit_camera(Path(folder), cam)
        print(f"{cam}: centre offset (arcsec, spacecraft frame) ({off[0]:.1f}, {off[1]:.1f}); "
              f"on-axis {n:.0f} s; residual rms {rms:.3f}")
        for e, t0, k in bands:
            print(f"    E = {e:.2f} keV: theta0 = {t0:.3f}', k = {k:.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/xmm_a907_0201903501/sas_images")
