"""Drawing the events of a simulated observation: energies from spectra, positions
(beta model, disks, CCDs), arrival times (steady, flares), vignetting, PSF blur and
detection on the real-geometry CCD layout."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import xmmext.events.grades as grades
import xmmext.events.particles as particles
import xmmext.instrument as ins
from xmmext.events.footprint import optical_axis

__all__ = ["OOT_FRACTION_PN", "Events", "concat_events", "sample_energies", "uniform_times", "disk",
           "photon_component", "vignetting", "psf_blur", "beta_cdf", "beta_positions", "flare_intervals",
           "flare_profile_times", "particle_energies", "out_of_time", "detect", "ccd_area_arcmin2",
           "ccd_uniform_positions", "soft_protons"]

# Instrumental fluorescence lines of the particle background: (keV, mean fraction of the
# particle events, how the strength varies across the detector). Kuntz & Snowden (2008):
# MOS Al K is nearly flat, MOS Si K is stronger towards the outer CCDs, pn's Cu/Ni/Zn lines
# come from the electronics board behind the CCDs and are nearly absent over a central hole.
_QPB_LINES = {"pn": ((1.487, 0.02, "flat"), (8.040, 0.05, "pn_board"), (8.630, 0.015, "pn_board")),
              "mos": ((1.487, 0.05, "flat"), (1.740, 0.03, "outer"))}
OOT_FRACTION_PN = ins.PN_OOT_FRACTION["PrimeFullWindow"]    # the simulator writes full-frame lists


def _line_weight(kind: str, r_det_arcmin: np.ndarray) -> np.ndarray:
    """Relative line strength vs distance from the detector centre (mean ~1 over the CCDs)."""
    r = np.asarray(r_det_arcmin, float)
    if kind == "outer":
        return 0.4 + 1.1 * (r / 13.0) ** 2
    if kind == "pn_board":
        return np.where(r < 4.5, 0.1, 1.25)
    return np.ones_like(r)


# --------------------------------------------------------------------
@dataclass
class Events:
    """Photon/particle events of one component before detector effects."""
    time: np.ndarray
    energy: np.ndarray     # keV (true) for photons; PI/1000 for particles
    x: np.ndarray          # sky pixels
    y: np.ndarray
    particle: bool
    redistribute: np.ndarray | None = None   # which events get the Gaussian resolution


def concat_events(parts: list[Events]) -> Events:
    """One component from several draws (e.g. the shells of a cool-core cluster)."""
    return Events(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("time", "energy", "x", "y")),
                  particle=parts[0].particle)


def sample_energies(rng, weights: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    idx = np.searchsorted(cdf, rng.uniform(0, 1, n))
    return ins.RESP_ELO[idx] + rng.uniform(0, 1, n) * (ins.RESP_EHI[idx] - ins.RESP_ELO[idx])


def uniform_times(rng, n, tstart, tstop):
    return rng.uniform(tstart, tstop, n)


def disk(rng, n, radius_px, cx=ins.SKY_REF_PIX, cy=ins.SKY_REF_PIX):
    r = radius_px * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    return cx + r * np.cos(phi), cy + r * np.sin(phi)


def photon_component(rng, cam, cfg, photons_per_s, spatial, times):
    """Draw photons: energies from spectrum x area, positions from ``spatial(n)``."""
    emid = 0.5 * (ins.RESP_ELO + ins.RESP_EHI)
    w = photons_per_s * cam.on_axis_area(emid, cfg.filter)
    mean = float(w.sum()) * cfg.exposure
    n = rng.poisson(mean)
    energy = sample_energies(rng, w, n)
    x, y = spatial(n)
    t = times(n)
    keep = rng.uniform(0, 1, n) < vignetting(cam, cfg, x, y, energy)
    return Events(t[keep], energy[keep], x[keep], y[keep], particle=False)


def vignetting(cam, cfg, x, y, energy):
    """The camera's vignetting about its own optical axis (as the real telescopes have it)."""
    ax, ay = optical_axis(cam.name, cfg.pa_pnt)
    theta = np.hypot(np.asarray(x, float) - ax, np.asarray(y, float) - ay) * ins.SKY_PIX_ARCSEC / 60.0
    return ins.vignetting(cam.name, theta, energy)


def psf_blur(rng, cam, ev: Events) -> Events:
    dx, dy = cam.sample_psf(rng, len(ev.x))
    ev.x = ev.x + dx / ins.SKY_PIX_ARCSEC
    ev.y = ev.y + dy / ins.SKY_PIX_ARCSEC
    return ev


def beta_cdf(cfg, r_arcmin) -> np.ndarray:
    """Share of a projected beta model's flux inside radius r (to infinity-normalised form)."""
    q = 1.5 - 3 * cfg.beta
    return 1.0 - (1.0 + (np.asarray(r_arcmin, float) / cfg.core_radius_arcmin) ** 2) ** q


def beta_positions(rng, cfg, cx, cy, r_lo_arcmin: float = 0.0, r_hi_arcmin: float | None = None):
    """Positions drawn from the beta model between two radii (default: centre to r_max)."""
    rc = cfg.core_radius_arcmin * 60 / ins.SKY_PIX_ARCSEC
    q = 1.5 - 3 * cfg.beta                       # CDF: 1 - (1 + r^2/rc^2)^q
    umin = float(beta_cdf(cfg, r_lo_arcmin))
    umax = float(beta_cdf(cfg, cfg.r_max_arcmin if r_hi_arcmin is None else r_hi_arcmin))

    def draw(n):
        u = rng.uniform(umin, umax, n)
        r = rc * np.sqrt((1.0 - u) ** (1.0 / q) - 1.0)
        phi = rng.uniform(0, 2 * np.pi, n)
        return cx + r * np.cos(phi), cy + r * np.sin(phi)
    return draw


def flare_intervals(rng, cfg, tstart: float) -> list[list[float]]:
    """Non-overlapping flare intervals covering ``flare_fraction`` of the exposure."""
    total = cfg.flare_fraction * cfg.exposure
    if total <= 0:
        return []
    n = max(1, min(cfg.n_flares, int(total // 1000)))   # flares last >~1 ks on average
    lengths = rng.dirichlet(np.full(n, 4.0)) * total
    quiet = cfg.exposure - total
    # split the quiet time into n+1 gaps (random), the ends at least 500 s if possible
    gaps = rng.dirichlet(np.full(n + 1, 2.0)) * quiet
    t = tstart + gaps[0]
    out = []
    for k in range(n):
        out.append([float(t), float(t + lengths[k])])
        t += lengths[k] + gaps[k + 1]
    return out


def flare_profile_times(rng, intervals, amplitudes, peak_rate, n_max_factor=1.0):
    """Event times of flares: a plateau with 60 s exponential rise and decay inside each
    interval (so the interval bounds the flare)."""
    times = []
    for (t0, t1), amp in zip(intervals, amplitudes):
        grid = np.arange(t0, t1, 5.0)
        if len(grid) == 0:
            continue
        shape = (1 - np.exp(-(grid - t0 + 2.5) / 60.0)) * (1 - np.exp(-(t1 - grid - 2.5 + 5) / 60.0))
        shape = np.clip(shape, 0, None)
        rate = amp * peak_rate * shape
        n = rng.poisson(rate * 5.0)
        t = np.repeat(grid, n) + rng.uniform(0, 5.0, int(n.sum()))
        times.append(np.clip(t, t0, np.nextafter(t1, t0)))
    return np.concatenate(times) if times else np.zeros(0)


def particle_energies(rng, cam, n, r_det_arcmin):
    """QPB: continuum with the shape measured on real background spectra
    (particles.particle_shape: 1-keV bins above 6 keV, held below and above) + the
    instrumental lines, whose strength depends on where on the detector the event falls
    (``r_det_arcmin``: distance from the detector centre, of ``n`` events drawn uniformly
    over the CCDs).

    The lines come on top of a continuum that is the same everywhere (fluorescence from
    the camera's surroundings adds to what the particles deposit): an event that is not
    a line is kept as continuum with probability (1 - most line share anywhere) / (1 -
    line share here), so where lines are weak the continuum is not inflated. Returns the
    energies, which events are lines, and which events are kept."""
    kind = "pn" if cam.name == "pn" else "mos"
    emax = cam.max_pi / 1000.0
    grid = np.arange(0.2, emax, 0.01)
    w = particles.particle_shape(cam.name, grid + 0.005)
    e = rng.choice(grid, n, p=w / w.sum()) + rng.uniform(0, 0.01, n)
    is_line = np.zeros(n, bool)
    u = rng.uniform(0, 1, n)
    lo = np.zeros(n)
    r_all = np.linspace(0.0, 20.0, 401)
    most = np.zeros_like(r_all)
    for energy, frac, shape in _QPB_LINES[kind]:
        if energy > emax:
            continue
        p = frac * _line_weight(shape, r_det_arcmin)
        most += frac * _line_weight(shape, r_all)
        sel = (u >= lo) & (u < lo + p)
        e[sel] = energy
        is_line |= sel
        lo = lo + p
    keep = is_line | (rng.uniform(0, 1, n) < (1.0 - most.max()) / (1.0 - lo))
    return e, is_line, keep


def out_of_time(rng, cam, detx, dety, ccdnr, fraction: float = OOT_FRACTION_PN):
    """pn out-of-time events: photons arriving while the CCD is read out, recorded at a
    random RAWY along their column (as epchain's OOT list models them). They come on top
    of the in-time events, which are what the calibrated area and EXPOSURE predict (the
    OOT list is scaled to the in-time events, not taken out of them).
    Returns which photons also gave an OOT event and that event's DET position."""
    extra = (rng.uniform(0, 1, len(detx)) < fraction) & (ccdnr > 0)
    idx = np.flatnonzero(extra)
    ox, oy = np.array(detx, float)[idx], np.array(dety, float)[idx]
    for nr in np.unique(ccdnr[idx]):
        c = cam.ccd(int(nr))
        sel = ccdnr[idx] == nr
        u, _ = c.to_local(ox[sel], oy[sel])
        v = rng.uniform(0, 2 * c.half_h, int(sel.sum()))
        ox[sel], oy[sel] = c.to_det(u, v)
    return idx, ox, oy


def detect(rng, cam, cfg, ev: Events, active, fov_only: bool):
    """Place events on the detector: CCD, RAW, DET, PI, PATTERN, FLAG; drop the lost ones.
    Returns the event columns and which of them are pn out-of-time events."""
    detx, dety = ins.sky_to_det(cam, ev.x, ev.y, cfg.pa_pnt)
    ccdnr, rawx, rawy = cam.locate(detx, dety, active)
    moved = np.zeros(len(detx), bool)
    if cam.name == "pn" and not ev.particle and cfg.pn_oot:
        # only photons that reach the CCDs (the baffle stops the rest) have OOT twins
        seen = np.where(cam.in_fov(detx, dety) if fov_only else True, ccdnr, 0)
        idx, ox, oy = out_of_time(rng, cam, detx, dety, seen)
        if len(idx):
            sx, sy = ins.det_to_sky(cam, ox, oy, cfg.pa_pnt)
            red = None if ev.redistribute is None else np.concatenate([ev.redistribute, ev.redistribute[idx]])
            ev = Events(np.concatenate([ev.time, ev.time[idx]]), np.concatenate([ev.energy, ev.energy[idx]]),
                        np.concatenate([ev.x, sx]), np.concatenate([ev.y, sy]), ev.particle, red)
            detx, dety = np.concatenate([detx, ox]), np.concatenate([dety, oy])
            moved = np.concatenate([moved, np.ones(len(idx), bool)])
            ccdnr, rawx, rawy = cam.locate(detx, dety, active)
    inside = cam.in_fov(detx, dety)
    # out-of-time twins are read out wherever their column takes them, corners included
    keep = (ccdnr > 0) & ((inside | moved) if fov_only else True)
    if ev.redistribute is None:
        redis = np.ones(len(ev.x), bool)
    else:
        redis = ev.redistribute
    e = ev.energy.copy()
    sig = cam.sigma_kev(np.clip(e, 0.05, None))
    e = np.where(redis, e + rng.normal(0, 1, len(e)) * sig, e)
    pi = np.round(e * 1000.0)
    keep &= (pi >= 0) & (pi <= cam.max_pi)
    idx = np.flatnonzero(keep)
    n = len(idx)
    flag = np.zeros(n, np.int32)
    c_nx = np.array([cam.ccd(c).nx for c in ccdnr[idx]]) if n else np.zeros(0)
    c_ny = np.array([cam.ccd(c).ny for c in ccdnr[idx]]) if n else np.zeros(0)
    border = (rawx[idx] <= 1) | (rawy[idx] <= 1) | (rawx[idx] >= c_nx) | (rawy[idx] >= c_ny)
    flag[border] |= grades.BORDER_FLAG                    # close to CCD border
    flag |= grades.draw_random_flags(rng, n)              # bad pixels / columns
    flag[~inside[idx]] |= ins.OUT_OF_FOV_FLAG
    return dict(
        TIME=ev.time[idx],
        RAWX=rawx[idx], RAWY=rawy[idx],
        DETX=np.round(detx[idx] / ins.SKY_PIX_ARCSEC).astype(np.int16),
        DETY=np.round(dety[idx] / ins.SKY_PIX_ARCSEC).astype(np.int16),
        X=np.round(ev.x[idx]).astype(np.int32), Y=np.round(ev.y[idx]).astype(np.int32),
        PI=pi[idx].astype(np.int16),
        PATTERN=grades.draw_patterns(rng, cam, n, ev.particle),
        FLAG=flag, CCDNR=ccdnr[idx].astype(np.uint8),
    ), moved[idx]


def ccd_area_arcmin2(cam, active) -> float:
    return sum((2 * c.half_w) * (2 * c.half_h) for c in cam.ccds if c.ccdnr in active) / 3600.0


def ccd_uniform_positions(rng, cam, cfg, n, active):
    """Uniform positions over the active CCDs (detector frame) -> sky pixels."""
    chips = [c for c in cam.ccds if c.ccdnr in active]
    areas = np.array([c.half_w * c.half_h for c in chips])
    pick = rng.choice(len(chips), n, p=areas / areas.sum())
    cx = np.array([c.cx for c in chips])[pick]
    cy = np.array([c.cy for c in chips])[pick]
    hw = np.array([c.half_w for c in chips])[pick]
    hh = np.array([c.half_h for c in chips])[pick]
    detx = cx + rng.uniform(-1, 1, n) * hw
    dety = cy + rng.uniform(-1, 1, n) * hh
    return ins.det_to_sky(cam, detx, dety, cfg.pa_pnt)


def soft_protons(rng, cam, cfg, t, fov_px) -> Events:
    n = len(t)
    emax = cam.max_pi / 1000.0
    # counts-space power law E^-index (default 0.8) between 0.2 keV and the top of the PI range
    a = 1 - cfg.sp_index
    u = rng.uniform(0, 1, n)
    e = (0.2 ** a + u * (emax ** a - 0.2 ** a)) ** (1 / a)
    x, y = disk(rng, n, fov_px)
    ax, ay = optical_axis(cam.name, cfg.pa_pnt)
    theta = np.hypot(x - ax, y - ay) * ins.SKY_PIX_ARCSEC / 60.0
    keep = rng.uniform(0, 1, n) < ins.soft_proton_vignetting(theta)
    return Events(t[keep], e[keep], x[keep], y[keep], particle=False,
                  redistribute=np.zeros(int(keep.sum()), bool))
