"""Temperature profile's work (the step: :mod:`xmmext.steps.profile`).

1. The background-subtracted 0.3-2 keV counts profile about the source centre, summed over
   the cameras: events in 3" rings (point sources cut out), each ring's exposed area on
   the CCDs, and the background level measured in step 2's background region.
2. Annuli grown outwards from the centre until each reaches the target signal-to-noise
   (and a minimum width, so the PSF does not mix neighbours); a remainder that falls
   short is added to the last annulus.
3. For each annulus, the spectra and responses of step 3 (same code: extended ARF
   weighted by the annulus's own brightness, per-channel background scaling) and a joint
   thermal fit of the cameras with errors, each in profile/annulus_NN/ with its fit.xcm
   so it can be redone in XSPEC.
4. One joint fit of all annuli with the PSF's cross-talk between them
   (:mod:`xmmext.fitting.crosstalk`), started from the fits of 3 (with the modelled
   background, each annulus's fitted background held fixed).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import xmmext.instrument as ins
from xmmext.core.errors import DataError
from xmmext.events.reader import read_events
from xmmext.core.fileio import read_json, save_figure, write_text
from xmmext.events.footprint import geometry_from_events
from xmmext.core.paths import ObsPaths
from xmmext.sky.extraction_region import ExtractionRegion, read_ds9
from xmmext.spectra.extraction import backscal

__all__ = ["PROFILE_BAND_KEV", "RING_ARCSEC", "AREA_STEP_PX", "Annulus", "profile_regions", "counts_profile",
           "choose_annuli", "write_annuli_regions", "write_annuli_sky_regions", "plot_profile"]

log = logging.getLogger("xmmext.spectra.annuli")
PROFILE_BAND_KEV = (0.3, 2.0)
RING_ARCSEC = 3.0
AREA_STEP_PX = 40.0               # 2" sampling of the exposed area


@dataclass
class Annulus:
    """One annulus of the profile (radii in arcmin) and its 0.3-2 keV counts."""
    r_in: float
    r_out: float
    counts: float
    background: float             # expected background counts in it
    sn: float

    def region(self, centre: tuple[float, float], exclude: list) -> ExtractionRegion:
        px = 60.0 / ins.SKY_PIX_ARCSEC
        return ExtractionRegion(centre[0], centre[1], self.r_in * px, self.r_out * px, list(exclude))


def profile_regions(paths: ObsPaths, ra_pnt: float, dec_pnt: float) -> tuple[tuple, list, ExtractionRegion]:
    """(centre X/Y, every point-source exclusion in sky pixels, the background region)
    from step 2's files."""
    src = read_ds9(paths.regions / "src.reg", ra_pnt, dec_pnt)
    bkg = read_ds9(paths.regions / "bkg.reg", ra_pnt, dec_pnt)
    info = read_json(paths.regions / "regions.json", "regions.json of step 2")
    exclude = []
    for e in info.get("excluded", []):
        x, y = ins.radec_to_sky(e["ra"], e["dec"], ra_pnt, dec_pnt)
        exclude.append((float(np.ravel(x)[0]), float(np.ravel(y)[0]), e["radius_arcsec"] / ins.SKY_PIX_ARCSEC))
    return (src.x, src.y), exclude, bkg


def counts_profile(paths: ObsPaths, cameras, r_max_arcmin: float) -> dict:
    """Counts, expected background and its variance in 3" rings out to ``r_max_arcmin``,
    0.3-2 keV, summed over the cameras (their step-1 cleaned lists), with the centre and
    point-source exclusions it used (``centre``, ``exclude``). The background is
    scaled by exposed area only: it sets where annuli end, the spectra's own background
    scaling (step 3) is what the fits use."""
    edges = np.arange(0.0, r_max_arcmin * 60.0 + RING_ARCSEC, RING_ARCSEC) / ins.SKY_PIX_ARCSEC
    edges[-1] = min(edges[-1], r_max_arcmin * 60.0 / ins.SKY_PIX_ARCSEC)
    total = {"counts": np.zeros(len(edges) - 1), "background": np.zeros(len(edges) - 1),
             "variance": np.zeros(len(edges) - 1)}
    used = []
    for cam in cameras:
        path = paths.clean_events(cam)
        if not path.exists():
            continue
        ev = read_events(path, columns=["X", "Y", "PI"])
        centre, exclude, bkg = profile_regions(paths, float(ev.key("RA_PNT")), float(ev.key("DEC_PNT")))
        geo = geometry_from_events(path, cam, sorted(ev.gtis) or None)
        x, y, pi = (ev.columns[k].astype(float) for k in ("X", "Y", "PI"))
        band = (pi >= PROFILE_BAND_KEV[0] * 1000) & (pi < PROFILE_BAND_KEV[1] * 1000)
        disk = ExtractionRegion(centre[0], centre[1], 0.0, edges[-1], exclude)
        inside = band & disk.contains(x, y)
        r = np.hypot(x[inside] - centre[0], y[inside] - centre[1])
        counts = np.histogram(r, edges)[0].astype(float)
        area = _exposed_ring_area(disk, geo, edges)
        bkg_area = backscal(bkg, geo)
        if bkg_area <= 0:
            continue
        n_bkg = float(np.count_nonzero(band & bkg.contains(x, y)))
        scale = area / bkg_area
        total["counts"] += counts
        total["background"] += n_bkg * scale
        total["variance"] += n_bkg * scale ** 2
        used.append(cam)
    if not used:
        raise DataError("no camera has cleaned events and a background region on its CCDs",
                        paths.regions / "bkg.reg")
    total.update(edges_arcmin=edges * ins.SKY_PIX_ARCSEC / 60.0, cameras=used, centre=centre, exclude=exclude)
    return total


def _exposed_ring_area(disk: ExtractionRegion, geo, edges: np.ndarray) -> np.ndarray:
    """Exposed area (sky pixels^2) of each ring of ``disk`` (exclusions removed)."""
    xs = np.arange(disk.x - disk.r_out + AREA_STEP_PX / 2, disk.x + disk.r_out, AREA_STEP_PX)
    X, Y = np.meshgrid(xs, xs - disk.x + disk.y)
    ok = disk.contains(X, Y) & geo.exposed(X, Y)
    r = np.hypot(X[ok] - disk.x, Y[ok] - disk.y)
    return np.histogram(r, edges)[0] * AREA_STEP_PX ** 2


def choose_annuli(profile: dict, target_sn: float, min_width_arcmin: float, max_annuli: int) -> list[Annulus]:
    """Annuli from the centre outwards, each closed once its net counts reach
    ``target_sn`` (net / sqrt(counts + background variance)) and it is at least
    ``min_width_arcmin`` wide; what is left at the edge joins the last annulus."""
    edges, c, b, v = profile["edges_arcmin"], profile["counts"], profile["background"], profile["variance"]
    out: list[Annulus] = []
    start, acc = 0, np.zeros(3)
    for i in range(len(c)):
        acc += (c[i], b[i], v[i])
        sn = _sn(*acc)
        if sn >= target_sn and edges[i + 1] - edges[start] >= min_width_arcmin - 1e-9:
            out.append(Annulus(float(edges[start]), float(edges[i + 1]), float(acc[0]), float(acc[1]), sn))
            start, acc = i + 1, np.zeros(3)
            if len(out) == max_annuli:
                break
    if out and start < len(c) and len(out) < max_annuli:
        last = out[-1]                         # the short remainder joins the last annulus
        n, bb = last.counts + c[start:].sum(), last.background + b[start:].sum()
        r_out = float(edges[-1])
        out[-1] = Annulus(last.r_in, r_out, float(n), float(bb), _sn(n, bb, _variance_of(profile, last.r_in, r_out)))
    return out


def _variance_of(profile: dict, r_in: float, r_out: float) -> float:
    edges = profile["edges_arcmin"]
    sel = (edges[:-1] >= r_in - 1e-9) & (edges[1:] <= r_out + 1e-9)
    return float(profile["variance"][sel].sum())


def _sn(counts: float, background: float, variance: float) -> float:
    net = counts - background
    return net / math.sqrt(counts + variance) if counts + variance > 0 else 0.0


def write_annuli_regions(path: Path, annuli: list[Annulus], centre: tuple, exclude: list) -> Path:
    """All annuli in one ds9 file (physical), for looking at them over the image."""
    lines = ["# Region file format: DS9 version 4.1\n", "physical\n"]
    for k, a in enumerate(annuli, start=1):
        reg = a.region(centre, [])
        shape = (f"annulus({reg.x:.2f},{reg.y:.2f},{reg.r_in:.2f},{reg.r_out:.2f})" if reg.is_annulus
                 else f"circle({reg.x:.2f},{reg.y:.2f},{reg.r_out:.2f})")
        lines.append(f"{shape} # text={{{k}}}\n")
    for ex, ey, er in exclude:
        lines.append(f"-circle({ex:.2f},{ey:.2f},{er:.2f})\n")
    return write_text(path, "".join(lines))


def write_annuli_sky_regions(path: Path, annuli: list[Annulus], centre: tuple, exclude: list,
                             ra_pnt: float, dec_pnt: float) -> Path:
    """The same annuli in fk5, for images other than the pipeline's."""
    lines = ["# Region file format: DS9 version 4.1\n", "fk5\n"]
    for k, a in enumerate(annuli, start=1):
        shape = a.region(centre, []).ds9_fk5(ra_pnt, dec_pnt).splitlines()[2]
        lines.append(f"{shape} # text={{{k}}}\n")
    for ex, ey, er in exclude:
        circle = ExtractionRegion(ex, ey, 0.0, er).ds9_fk5(ra_pnt, dec_pnt).splitlines()[2]
        lines.append(f"-{circle}\n")
    return write_text(path, "".join(lines))


def plot_profile(path: Path, profile: dict, annuli: list[dict], title: str) -> Path:
    """kT per annulus (with its errors and width) over the 0.3-2 keV net brightness."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_t, ax_s) = plt.subplots(2, 1, figsize=(6.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for a in annuli:
        kt = a["kT"]
        mid = 0.5 * (a["r_in_arcmin"] + a["r_out_arcmin"])
        half = 0.5 * (a["r_out_arcmin"] - a["r_in_arcmin"])
        lo = kt["value"] - kt["lower"] if kt["lower"] is not None else 0.0
        hi = kt["upper"] - kt["value"] if kt["upper"] is not None else 0.0
        ax_t.errorbar(mid, kt["value"], xerr=half, yerr=[[lo], [hi]], fmt="o", color="C0", ms=4, capsize=2,
                      label="PSF cross-talk modelled" if "kT_independent" in a else None)
        ind = a.get("kT_independent")
        if ind and ind["lower"] is not None and ind["upper"] is not None:     # the fit without it
            ax_t.errorbar(mid + 0.15 * half, ind["value"], yerr=[[ind["value"] - ind["lower"]], [ind["upper"] - ind["value"]]],
                          fmt="o", mfc="none", color="0.55", ms=4, capsize=2, lw=0.8, label="annuli fitted independently")
    handles, labels = ax_t.get_legend_handles_labels()
    if labels:
        unique = dict(zip(labels, handles))
        ax_t.legend(unique.values(), unique.keys(), fontsize=8, loc="lower right")
    ax_t.set_ylabel("kT (keV)")
    ax_t.set_title(title, fontsize=9, loc="left")
    ax_t.grid(alpha=0.3)
    edges = profile["edges_arcmin"]
    area = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2)
    net = profile["counts"] - profile["background"]
    k = 4                                       # 12" display rings
    n = len(net) // k * k
    if n:
        r = 0.5 * (edges[:n:k] + edges[k:n + 1:k])
        sb = net[:n].reshape(-1, k).sum(1) / area[:n].reshape(-1, k).sum(1)
        err = np.sqrt(profile["counts"][:n].reshape(-1, k).sum(1)) / area[:n].reshape(-1, k).sum(1)
        good = sb > 0
        ax_s.errorbar(r[good], sb[good], yerr=err[good], fmt=".", color="k", ms=3, lw=0.6)
        ax_s.set_yscale("log")
    for a in annuli:
        ax_s.axvline(a["r_out_arcmin"], color="C0", lw=0.6, alpha=0.5)
    ax_s.set_ylabel("net counts / arcmin$^2$\n(0.3-2 keV, all cameras)")
    ax_s.set_xlabel("radius (arcmin)")
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
    return path
