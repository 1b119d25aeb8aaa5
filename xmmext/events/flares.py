"""Flares: the light curves of a camera and the good time they leave (step 1).

The high-energy single-event light curve of the FOV (MOS PI>10 keV, pn 10-12 keV,
PATTERN==0, 100 s bins, corrected for GTI coverage) and of the out-of-FOV corners; a flare
GTI from it (histogram / fixed / ratio, or the list's own good time when it was cleaned
already); the light curves as OGIP tables and a plot with the rejected time shaded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

import xmmext.events.gti as G
import xmmext.instrument as ins
from xmmext.core.errors import DataError
from xmmext.core.fileio import save_figure
from xmmext.events.reader import EventList
from xmmext.events.selection import compile_expression

__all__ = ["REFERENCE_CCD", "CORNER_EXPRESSION", "FlareResult", "observation_gti", "reference_gti",
           "resolve_method", "flare_gti", "light_curve_hdulist", "plot_light_curve"]

# Central CCD whose GTI defines the camera exposure (as SAS's EXPOSURE keyword does).
REFERENCE_CCD = {"mos1": 1, "mos2": 1, "pn": 4}
CORNER_EXPRESSION = f"((FLAG & {ins.OUT_OF_FOV_FLAG:#x})!=0) && (PATTERN<=12) && (PI>500)"


@dataclass
class FlareResult:
    gti: np.ndarray
    lc: G.LightCurve
    corner: G.LightCurve
    screening: G.Screening
    note: str | None = None


def observation_gti(ev: EventList) -> np.ndarray:
    """Time the camera took data: the union of the per-CCD GTIs (else TSTART..TSTOP)."""
    if ev.gtis:
        return G.normalise(np.vstack(list(ev.gtis.values())))
    return np.array([[ev.tstart, ev.tstop]])


def reference_gti(ev: EventList) -> np.ndarray:
    ref = REFERENCE_CCD[ev.camera]
    if ref in ev.gtis:
        return G.normalise(ev.gtis[ref])
    return observation_gti(ev)


def resolve_method(method: str, prefiltered: bool) -> str:
    """``auto``: keep the good time of a list that was already screened, else histogram."""
    if method == "auto":
        return "input" if prefiltered else "histogram"
    return method


def flare_gti(ev: EventList, opts, prefiltered: bool = False) -> FlareResult:
    """Screen the high-energy FOV light curve for soft-proton flares.

    The light curve's exposure is the list's own good time (STDGTInn x its filter GTIs),
    so the intervals a previous screening removed count as no time, not as zero rate."""
    cam = ins.camera(ev.camera)
    cols = ev.columns
    fov_hard = compile_expression(f"({cam.flare_expression}) && #INFOV").evaluate(cols)
    corner_sel = compile_expression(CORNER_EXPRESSION).evaluate(cols)
    obs_gti = observation_gti(ev)
    lc = G.light_curve(cols["TIME"][fov_hard], ev.tstart, ev.tstop, obs_gti, opts.binsize)
    corner = G.light_curve(cols["TIME"][corner_sel], ev.tstart, ev.tstop, obs_gti, opts.binsize)
    note = None
    method = resolve_method(opts.method, prefiltered)
    if method == "input":
        scr = G.Screening("input", float("inf"), float("-inf"), lc.exposure > 0)
        return FlareResult(obs_gti, lc, corner, scr, "already-filtered list: its own good time is kept "
                           "(no new screening; give --method histogram to screen it again)")
    if method == "fixed":
        scr = G.fixed_screen(lc, opts.threshold(ev.camera))
    elif method == "ratio":
        if corner.counts.sum() < 20:
            raise DataError("too few out-of-FOV corner events for the ratio method", ev.path)
        scr = G.ratio_screen(lc, corner, opts.sigma)
    else:
        scr = G.histogram_screen(lc, opts.sigma)
        # A quiescent level above the classic threshold means the whole exposure is
        # flared (the Gaussian sits on flare bins): fall back to the fixed threshold.
        if scr.mean is not None and scr.mean > opts.threshold(ev.camera):
            note = (f"fitted quiescent rate {scr.mean:.3f} ct/s exceeds the {opts.threshold(ev.camera)} ct/s "
                    "threshold: the observation is flared throughout; fixed threshold applied")
            scr = G.fixed_screen(lc, opts.threshold(ev.camera))
    good = G.bins_to_gti(lc.edges, scr.good_bins, obs_gti)
    good = G.drop_short(good, opts.min_gti)
    return FlareResult(good, lc, corner, scr, note)


def light_curve_hdulist(ev: EventList, res: FlareResult) -> fits.HDUList:
    """OGIP light curves: RATE (FOV, high energy) and CORNER (out-of-FOV)."""
    def table(lc: G.LightCurve, name: str):
        hdu = fits.BinTableHDU.from_columns([
            fits.Column("TIME", "D", unit="s", array=lc.centres),
            fits.Column("COUNTS", "J", unit="count", array=lc.counts.astype(np.int32)),
            fits.Column("RATE", "E", unit="count/s", array=np.nan_to_num(lc.rate)),
            fits.Column("ERROR", "E", unit="count/s", array=np.nan_to_num(lc.rate_error)),
            fits.Column("FRACEXP", "E", array=lc.exposure / (lc.edges[1] - lc.edges[0])),
        ], name=name)
        h = hdu.header
        h["HDUCLASS"], h["HDUCLAS1"], h["HDUCLAS2"] = "OGIP", "LIGHTCURVE", "TOTAL"
        h["TIMEDEL"] = (float(lc.edges[1] - lc.edges[0]), "[s] bin size")
        h["TSTART"], h["TSTOP"] = float(lc.edges[0]), float(lc.edges[-1])
        h["TIMESYS"], h["MJDREF"], h["TIMEUNIT"] = "TT", ins.MJDREF, "s"
        h["INSTRUME"] = ins.camera(ev.camera).instrume
        return hdu
    rate = table(res.lc, "RATE")
    rate.header["FLTMETH"] = (res.screening.method, "flare screening method")
    if np.isfinite(res.screening.threshold):
        rate.header["FLTTHR"] = (res.screening.threshold, "[count/s] upper limit applied")
    rate.header["SELEXPR"] = ins.camera(ev.camera).flare_expression
    return fits.HDUList([fits.PrimaryHDU(), rate, table(res.corner, "CORNER")])


def plot_light_curve(ev: EventList, res: FlareResult, dest, exposure: tuple[float, float] | None = None) -> None:
    """Light curve with the threshold and rejected intervals shaded; corners beneath. The
    title gives the live time kept of the good time before screening (``exposure``:
    before, after in s, as filtering.json has them; else the share of the curve's span)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t0 = res.lc.edges[0]
    with plt.rc_context({"font.size": 13}):      # shown at half width in the report: larger type
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5.6), sharex=True,
                                     gridspec_kw={"height_ratios": [2.2, 1]})
        _draw_light_curve(fig, a1, a2, ev, res, t0, exposure)
    save_figure(dest, fig)
    plt.close(fig)


def _draw_light_curve(fig, a1, a2, ev: EventList, res: FlareResult, t0: float, exposure) -> None:
    """The rate with its cut and the rejected intervals (a1), the corners beneath (a2)."""
    x = (res.lc.centres - t0) / 1000.0
    a1.step(x, res.lc.rate, where="mid", color="k", lw=0.8, label="FOV, high energy, PATTERN==0")
    if np.isfinite(res.screening.threshold):
        a1.axhline(res.screening.threshold, color="C3", ls="--", lw=1.2,
                   label=f"{res.screening.method} cut {res.screening.threshold:.3f} ct/s")
    bad = G.intersect([[res.lc.edges[0], res.lc.edges[-1]]], res.gti)
    edges_bad = _complement(bad, res.lc.edges[0], res.lc.edges[-1])
    for s, e in edges_bad:
        for ax in (a1, a2):
            ax.axvspan((s - t0) / 1000, (e - t0) / 1000, color="C3", alpha=0.15, lw=0)
    a1.set_ylabel("rate (ct/s)")
    if exposure is not None and exposure[0] > 0:
        kept = (f"kept {exposure[1]:.0f} of {exposure[0]:.0f} s of good time, "
                f"{100 * exposure[1] / exposure[0]:.0f}%")
    else:
        share = G.total(res.gti) / max(G.total(np.array([[res.lc.edges[0], res.lc.edges[-1]]])), 1)
        kept = f"kept {100 * share:.0f}% of the light curve's span"
    a1.set_title(f"{ins.camera(ev.camera).instrume} {ev.key('OBS_ID', '')}: flare screening "
                 f"({kept}; shaded = rejected)", fontsize=11)
    a1.legend(loc="upper right", fontsize=10)
    a2.step(x, res.corner.rate, where="mid", color="C0", lw=0.8)
    a2.set_ylabel("corner (ct/s)")
    a2.set_xlabel(f"time since {t0:.0f} s (ks)")
    fig.tight_layout()


def _complement(gti, t0, t1):
    g = G.normalise(gti)
    edges = [t0] + g.ravel().tolist() + [t1]
    pairs = np.array(edges).reshape(-1, 2)
    return pairs[pairs[:, 1] > pairs[:, 0]]
