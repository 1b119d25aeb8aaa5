"""pn out-of-time events: photons recorded while a CCD is read out, at a random place of
their column. They follow the columns of the bright parts of the field, not the sky: the
expected numbers in a region (spectra), in the out-of-FOV corners (particles) and in each
image pixel (the detection background's streaks)."""
from __future__ import annotations

import numpy as np

import xmmext.instrument as ins

__all__ = ["column_shares", "out_of_time_spectra", "oot_fraction", "out_of_time_image", "out_of_time_in_regions"]


def column_shares(geo, inside) -> dict[int, np.ndarray]:
    """{ccd: share of each RAWX column's pixels that are usable and satisfy ``inside(x, y)``}."""
    shares = {}
    for n, c in geo.ccds.items():
        rx, ry = np.meshgrid(np.arange(1, c.nx + 1), np.arange(1, c.ny + 1))
        x = c.matrix[0, 0] * rx + c.matrix[0, 1] * ry + c.matrix[0, 2]
        y = c.matrix[1, 0] * rx + c.matrix[1, 1] * ry + c.matrix[1, 2]
        shares[n] = np.count_nonzero(inside(x, y) & c.good, axis=0) / c.ny
    return shares


def out_of_time_spectra(cam: ins.Camera, geo, events: dict, fraction: float, regions: dict) -> dict:
    """pn out-of-time events expected in each region, per channel: every in-time event has
    a twin with probability ``fraction`` at a uniformly random RAWY of its column (what
    epchain's simulated OOT list holds, scaled by the mode's OOT fraction), which lands in a
    region with the share of the column's usable pixels inside it. The recorded events
    already hold the twins (1 + fraction of the in-time ones), hence fraction / (1 +
    fraction) of them. Particle events count too: their twins are as uniform as they are,
    so what this adds to a region is taken back by the particle level measured in the
    corners (which loses its own share the same way). ``events``: RAWX, CCDNR, PI of the
    cleaned list; ``regions``: {name: inside(x, y)}. The OOT events' slightly wrong CTI
    correction is not modelled."""
    rawx, ccdnr = np.asarray(events["RAWX"], int), np.asarray(events["CCDNR"], int)
    chan = np.clip(np.asarray(events["PI"], int) // int(ins.CHANNEL_EV), 0, cam.n_channels - 1)
    out = {}
    for name, inside in regions.items():
        weight = np.zeros(len(rawx))
        for n, share in column_shares(geo, inside).items():
            on = (ccdnr == n) & (rawx >= 1) & (rawx <= len(share))
            weight[on] = share[rawx[on] - 1]
        out[name] = fraction / (1.0 + fraction) * np.bincount(chan, weights=weight, minlength=cam.n_channels)
    return out


def oot_fraction(cam: str, ev) -> float:
    """pn: the out-of-time events per in-time event of the list's readout mode (SUBMODE; an
    unknown mode is taken as full frame, the commonest and the largest fraction); MOS: 0
    (its 0.35% is neglected)."""
    if cam != "pn":
        return 0.0
    mode = str(ev.key("SUBMODE", "PrimeFullWindow")).strip()
    return ins.PN_OOT_FRACTION.get(mode, ins.PN_OOT_FRACTION["PrimeFullWindow"])


def out_of_time_image(geo, rawx, ccdnr, fraction: float, grid) -> np.ndarray:
    """pn out-of-time events expected in each pixel of an image grid: the twins of the
    recorded events (fraction / (1 + fraction) of them, as in :func:`out_of_time_spectra`)
    spread uniformly along their CCD column, i.e. the streaks that run from a bright source
    along the readout direction. For the detection background: without it a bright core's
    streak is found as a line of point sources."""
    rawx, ccdnr = np.asarray(rawx, int), np.asarray(ccdnr, int)
    ex, ey = grid.edges()
    image = np.zeros((grid.n, grid.n))
    for n, c in geo.ccds.items():
        per_column = np.bincount(np.clip(rawx[ccdnr == n] - 1, 0, c.nx - 1), minlength=c.nx).astype(float)
        if per_column.sum() == 0:
            continue
        rx, ry = np.meshgrid(np.arange(1, c.nx + 1), np.arange(1, c.ny + 1))
        usable = c.good.sum(axis=0)
        weight = np.where(c.good, fraction / (1.0 + fraction) * per_column / np.maximum(usable, 1), 0.0)
        x = c.matrix[0, 0] * rx + c.matrix[0, 1] * ry + c.matrix[0, 2]
        y = c.matrix[1, 0] * rx + c.matrix[1, 1] * ry + c.matrix[1, 2]
        image += np.histogram2d(y.ravel(), x.ravel(), bins=[ey, ex], weights=weight.ravel())[0]
    return image


def out_of_time_in_regions(cam: ins.Camera, geo, events: dict, fraction: float, src, bkg) -> dict:
    """:func:`out_of_time_spectra` for the source and background regions and the out-of-FOV
    corners (``src``, ``bkg``: ExtractionRegions)."""
    return out_of_time_spectra(cam, geo, events, fraction,
                               {"src": src.contains, "bkg": bkg.contains, "corner": lambda x, y: ~geo.in_fov(x, y)})
