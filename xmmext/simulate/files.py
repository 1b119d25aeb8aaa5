"""The files of a simulated observation: event lists in the PPS layout (EVENTS + one
STDGTInn per CCD, the keywords SAS writes), so every reader treats them as real lists."""
from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.time import Time, TimeDelta

import xmmext.instrument as ins

__all__ = ["event_hdulist"]


def event_hdulist(cam: ins.Camera, cfg, cols: dict, tstart: float, tstop: float,
                  active: list[int], ra_obj: float, dec_obj: float) -> fits.HDUList:
    """An EPIC event list in the PPS layout: EVENTS + one STDGTInn per CCD."""
    common = _common_keywords(cam, cfg, tstart, tstop, ra_obj, dec_obj)
    prim = fits.PrimaryHDU()
    for k, v in common.items():
        prim.header[k] = v
    ev = _events_hdu(cam, cfg, cols, common)
    ontime = tstop - tstart
    h = ev.header
    h["ONTIME"] = (ontime, "[s] sum of GTIs (central CCD)")
    h["LIVETIME"] = (ontime, "[s] live time (no dead time simulated)")
    h["EXPOSURE"] = (ontime, "[s] exposure (central CCD)")
    for c in active:
        h[f"ONTIME{c:02d}"] = ontime
        h[f"LIVETI{c:02d}"] = ontime
        h[f"EXPOSU{c:02d}"] = ontime
    return fits.HDUList([prim, ev] + [_gti_hdu(c, tstart, tstop) for c in active])


def _common_keywords(cam: ins.Camera, cfg, tstart: float, tstop: float, ra_obj: float, dec_obj: float) -> dict:
    """The keywords of the primary and EVENTS headers, as SAS writes them."""
    date_end = (Time(cfg.date_obs, scale="utc") + TimeDelta(cfg.exposure, format="sec")).isot[:19]
    common = {
        "TELESCOP": ("XMM", "Telescope (mission) name"),
        "INSTRUME": (cam.instrume, "Instrument name"),
        "OBS_ID": (cfg.obsid, "Observation identifier"),
        "EXP_ID": (f"{cfg.obsid}{'001' if cam.name == 'pn' else ('002' if cam.name == 'mos1' else '003')}", ""),
        "OBJECT": ("SIMULATED CLUSTER", "Name of observed object"),
        "DATE-OBS": (cfg.date_obs, "Start Time (UTC) of exposure"),
        "DATE-END": (date_end, "End Time (UTC) of exposure"),
        "FILTER": (cfg.filter, "Filter ID"),
        "DATAMODE": ("IMAGING", "Instrument mode"),
        "SUBMODE": ("PrimeFullWindow" if cam.name == "pn" else "PrimeFullWindow", "Guest Observer mode"),
        "RA_PNT": (cfg.ra_pnt, "[deg] mean pointing RA of the optical axis"),
        "DEC_PNT": (cfg.dec_pnt, "[deg] mean pointing Dec of the optical axis"),
        "PA_PNT": (cfg.pa_pnt, "[deg] Actual (mean) measured position angle"),
        "RA_NOM": (cfg.ra_pnt, "[deg] Ra of boresight"),
        "DEC_NOM": (cfg.dec_pnt, "[deg] Dec of boresight"),
        "RA_OBJ": (ra_obj, "[deg] Ra of the observed object"),
        "DEC_OBJ": (dec_obj, "[deg] Dec of the observed object"),
        "TSTART": (tstart, "[s] Start time"), "TSTOP": (tstop, "[s] Stop time"),
        "TIMESYS": ("TT", ""), "MJDREF": (ins.MJDREF, "[d] 1998-01-01T00:00:00 (TT)"),
        "TIMEUNIT": ("s", ""), "TIMEREF": ("LOCAL", ""), "TASSIGN": ("SATELLITE", ""),
        "EQUINOX": (2000.0, ""), "RADECSYS": ("FK5", ""),
        "CREATOR": ("xmmext.simulate.observation", "simulated, not real data"),
    }
    return common


def _events_hdu(cam: ins.Camera, cfg, cols: dict, common: dict) -> fits.BinTableHDU:
    """The EVENTS table with its column limits and the sky WCS (TCTYP/TCRPX..., REFX...)."""
    fits_cols = [
        fits.Column("TIME", "D", unit="s", array=cols["TIME"]),
        fits.Column("RAWX", "I", unit="pixel", array=cols["RAWX"]),
        fits.Column("RAWY", "I", unit="pixel", array=cols["RAWY"]),
        fits.Column("DETX", "I", unit="0.05 arcsec", array=cols["DETX"]),
        fits.Column("DETY", "I", unit="0.05 arcsec", array=cols["DETY"]),
        fits.Column("X", "J", unit="0.05 arcsec", array=cols["X"]),
        fits.Column("Y", "J", unit="0.05 arcsec", array=cols["Y"]),
        fits.Column("PI", "I", unit="eV", array=cols["PI"]),
        fits.Column("PATTERN", "B", array=cols["PATTERN"]),
        fits.Column("FLAG", "J", array=cols["FLAG"]),
        fits.Column("CCDNR", "B", array=cols["CCDNR"]),
    ]
    ev = fits.BinTableHDU.from_columns(fits_cols, name="EVENTS")
    h = ev.header
    for k, v in common.items():
        h[k] = v
    names = [c.name for c in fits_cols]
    ix, iy, ipi = names.index("X") + 1, names.index("Y") + 1, names.index("PI") + 1
    for i, ctype in ((ix, "RA---TAN"), (iy, "DEC--TAN")):
        h[f"TLMIN{i}"], h[f"TLMAX{i}"] = ins.SKY_TLMIN, ins.SKY_TLMAX
        h[f"TCTYP{i}"] = ctype
        h[f"TCRPX{i}"] = ins.SKY_REF_PIX
        h[f"TCRVL{i}"] = cfg.ra_pnt if i == ix else cfg.dec_pnt
        h[f"TCDLT{i}"] = (-1 if i == ix else 1) * ins.SKY_PIX_ARCSEC / 3600.0
        h[f"TCUNI{i}"] = "deg"
    for key, val in (("REFXCTYP", "RA---TAN"), ("REFXCRPX", ins.SKY_REF_PIX), ("REFXCRVL", cfg.ra_pnt),
                     ("REFXCDLT", -ins.SKY_PIX_ARCSEC / 3600.0), ("REFYCTYP", "DEC--TAN"),
                     ("REFYCRPX", ins.SKY_REF_PIX), ("REFYCRVL", cfg.dec_pnt),
                     ("REFYCDLT", ins.SKY_PIX_ARCSEC / 3600.0)):
        h[key] = val
    h[f"TLMIN{ipi}"], h[f"TLMAX{ipi}"] = 0, cam.max_pi
    ipat = names.index("PATTERN") + 1
    h[f"TLMIN{ipat}"], h[f"TLMAX{ipat}"] = 0, 31 if cam.name != "pn" else 12
    return ev


def _gti_hdu(ccd: int, tstart: float, tstop: float) -> fits.BinTableHDU:
    """One CCD's STDGTInn table: the whole exposure."""
    g = fits.BinTableHDU.from_columns([
        fits.Column("START", "D", unit="s", array=np.array([tstart])),
        fits.Column("STOP", "D", unit="s", array=np.array([tstop])),
    ], name=f"STDGTI{ccd:02d}")
    g.header["CCDID"] = (ccd, "CCD ID")
    g.header["HDUCLASS"], g.header["HDUCLAS1"], g.header["HDUCLAS2"] = "OGIP", "GTI", "STANDARD"
    g.header["ONTIME"] = tstop - tstart
    g.header["TSTART"], g.header["TSTOP"] = tstart, tstop
    g.header["TIMESYS"], g.header["MJDREF"] = "TT", ins.MJDREF
    return g
