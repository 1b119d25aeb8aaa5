"""Derive the particle-background spectral template of xmmext.events.particles.PARTICLE_TEMPLATE.

Usage: python tools/derive_particle_template.py ../shared/data/xmm_epic_ngc7793_ulx4

Reads the real SAS background spectra of NGC 7793 (MOS1, MOS2, pn; a source-free region
of a 20-36 ks observation) and prints counts per keV in 1-keV bins from 6 keV to the top
of each camera's particle band, relative to the per-keV level in that band
(particles.PARTICLE_BAND). Above 6 keV these spectra are dominated by the particle
background (the sky's share there is small for a local region); below, the sky dominates
them and the template holds its 6-7 keV value. MOS1/MOS2 are averaged.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

CHANNEL_KEV = 0.005
FILES = {"mos": ("MOS1/MOS1background_spectrum.fits", "MOS2/MOS2background_spectrum.fits"),
         "pn": ("PN/PNbackground_spectrum.fits",)}
BAND = {"mos": (10.0, 12.0), "pn": (10.0, 12.0)}


def per_kev(counts, lo, hi):
    return counts[int(round(lo / CHANNEL_KEV)):int(round(hi / CHANNEL_KEV))].sum() / (hi - lo)


def main(folder: str) -> None:
    for kind, names in FILES.items():
        lo_b, hi_b = BAND[kind]
        rel = []
        for name in names:
            c = np.asarray(fits.getdata(Path(folder) / name, "SPECTRUM")["COUNTS"], float)
            ref = per_kev(c, lo_b, hi_b)
            rel.append([per_kev(c, e, e + 1) / ref for e in range(6, int(hi_b))])
        mean = np.mean(rel, axis=0)
        rows = ", ".join(f"({e}, {e + 1}, {v:.2f})" for e, v in zip(range(6, int(hi_b)), mean))
        print(f"{kind}: ({rows})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/xmm_epic_ngc7793_ulx4")
