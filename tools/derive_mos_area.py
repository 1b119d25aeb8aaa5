"""Derive the soft end (0.3-1.4 keV) of the MOS on-axis area table of xmmext.instrument
from SAS arfgen ARFs.

Usage: python tools/derive_mos_area.py ../shared/data/xmm_epic_ngc7793_ulx4

The MOS1 and MOS2 ARFs of NGC 7793 ULX-4 (Medium filter) are normalised at 1.5 keV and
averaged; below 1.4 keV the PSF fraction and the vignetting at the source's off-axis angle
change little with energy (the pn ARF of the same source follows our pn area within 2%
over 0.6-1.5 keV), so the shape is the telescope + filter + CCD response. The table holds
the Medium-filter area (other filters are ratios to it).
Prints the table nodes; instrument.py holds the values from the shared ARFs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from xmmext import instrument as ins

NODES = np.round(np.arange(0.30, 1.401, 0.05), 3)


def arf_shape(path: Path) -> tuple[np.ndarray, np.ndarray]:
    a = fits.getdata(path, "SPECRESP")
    e = 0.5 * (a["ENERG_LO"] + a["ENERG_HI"])
    return e, a["SPECRESP"] / np.interp(1.5, e, a["SPECRESP"])


def main(folder: str) -> None:
    shapes = []
    for cam in ("MOS1", "MOS2"):
        e, s = arf_shape(Path(folder) / cam / f"{cam}.arf")
        # 50 eV boxcar: the nodes are 50 eV apart
        shapes.append(np.interp(NODES, e, np.convolve(s, np.ones(10) / 10, mode="same")))
    shape = np.mean(shapes, axis=0)
    ref = float(ins.camera("mos1").on_axis_area(1.5, "Medium"))
    table = shape * ref / ins.filter_ratio(NODES, "Medium")
    print("nodes (keV, cm^2) replacing 0.3-1.4 keV of _MOS_AREA:")
    print(", ".join(f"({e:.2f}, {a:.0f})" for e, a in zip(NODES, table)))
    print("MOS1/MOS2 shape difference (max):", float(np.max(np.abs(shapes[0] / shapes[1] - 1))))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/xmm_epic_ngc7793_ulx4")
