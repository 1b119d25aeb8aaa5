"""What a simulated observation sees on the sky besides the cluster's beta model: where the
cluster is, the point sources (about the pointing, or fixed on the sky so that pointings of
one cluster share them) and an arc of extra emission in the core (a sloshing cold front)."""
from __future__ import annotations

import numpy as np

import xmmext.instrument as ins
from xmmext.simulate.events import disk

__all__ = ["cluster_centre", "PS_REFERENCE_EXPOSURE_S", "draw_point_sources", "arc_positions"]


def cluster_centre(cfg) -> tuple[float, float]:
    """Sky X/Y of the cluster centre: --cluster-ra/--cluster-dec, else the offset from the pointing."""
    if cfg.cluster_ra is not None:
        x, y = ins.radec_to_sky(cfg.cluster_ra, cfg.cluster_dec, cfg.ra_pnt, cfg.dec_pnt)
        return float(x[0]), float(y[0])
    off_px = cfg.offset_arcmin * 60 / ins.SKY_PIX_ARCSEC
    a = np.deg2rad(cfg.offset_pa_deg)
    return ins.SKY_REF_PIX + off_px * np.sin(a), ins.SKY_REF_PIX + off_px * np.cos(a)


PS_REFERENCE_EXPOSURE_S = 30000.0     # sky-fixed sources (--sky-seed): counts drawn for this exposure


def draw_point_sources(cfg, rng, ccx: float, ccy: float):
    """Point sources: Euclidean logN-logS in pn counts, at least 60" from the cluster centre
    and 40" from each other; positions about the pointing (inside 13'), or - with
    ``sky_seed`` - fixed on the sky about the cluster (so that pointings of one cluster
    with the same sky seed see the same sources, their counts scaled by the exposure).
    Returns [(x, y)], pn counts, photon indices."""
    n_ps = cfg.n_point_sources
    sky_fixed = cfg.sky_seed is not None
    if sky_fixed:
        rng = np.random.default_rng(cfg.sky_seed)
    u = rng.uniform(0, 1, n_ps)
    s_min, s_max = cfg.ps_min_counts, cfg.ps_max_counts
    counts = (s_min ** -1.5 - u * (s_min ** -1.5 - s_max ** -1.5)) ** (-1 / 1.5)
    gamma = rng.normal(1.9, 0.2, n_ps)
    if sky_fixed:
        counts = counts * cfg.exposure / PS_REFERENCE_EXPOSURE_S
    c_ra, c_dec = ins.sky_to_radec(ccx, ccy, cfg.ra_pnt, cfg.dec_pnt)
    xy: list[tuple[float, float]] = []
    while len(xy) < n_ps:
        if sky_fixed:        # offsets on the sky (arcsec east, north) about the cluster centre
            ox, oy = disk(rng, 1, 13 * 60, 0.0, 0.0)
            ra = c_ra[0] + ox[0] / 3600.0 / np.cos(np.deg2rad(c_dec[0]))
            px, py = ins.radec_to_sky(ra, c_dec[0] + oy[0] / 3600.0, cfg.ra_pnt, cfg.dec_pnt)
        else:
            px, py = disk(rng, 1, 13 * 60 / ins.SKY_PIX_ARCSEC)
        far_from_cluster = np.hypot(px - ccx, py - ccy)[0] * ins.SKY_PIX_ARCSEC > 60
        far_from_others = all(np.hypot(px[0] - qx, py[0] - qy) * ins.SKY_PIX_ARCSEC > 40 for qx, qy in xy)
        if far_from_cluster and far_from_others:
            xy.append((float(px[0]), float(py[0])))
    return xy, counts, gamma


def arc_positions(rng, cfg, cx: float, cy: float):
    """An arc of emission about the cluster centre (a sloshing cold front): positions at
    radius arc_radius + Gaussian(arc_width), position angles uniform over arc_length
    about arc_pa (degrees east of north)."""
    r0 = cfg.arc_radius_arcmin * 60 / ins.SKY_PIX_ARCSEC
    width = cfg.arc_width_arcsec / ins.SKY_PIX_ARCSEC

    def draw(n):
        pa = np.deg2rad(cfg.arc_pa_deg + rng.uniform(-0.5, 0.5, n) * cfg.arc_length_deg)
        r = np.abs(r0 + width * rng.normal(0, 1, n))
        return cx - r * np.sin(pa), cy + r * np.cos(pa)          # sky X grows to the west
    return draw
