"""Step 2 with SAS: images on the native grid (evselect), exposure maps (eexpmap) and
point sources (edetect_chain); :func:`run_sas_images` runs them in results/<OBSID>/regions/sas/."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from xmmext.core.fileio import read_json
from xmmext.core.paths import ObsPaths
from xmmext.sas.tasks import SasTask, SasTaskError, observation_sas_env, run_in_folder

__all__ = ["evselect_image_range", "evselect_image", "eexpmap", "edetect_chain", "EXT_ML_MIN", "read_emllist",
           "atthkgen", "run_sas_images"]


# --- step 2 with SAS ------------------------------------------------------------------------
def evselect_image_range(x0: float, n: int, binsize: float) -> tuple[float, float]:
    """``ximagemin``/``ximagemax`` for which evselect bins an integer column into exactly the
    ``n`` pixels [x0 + k*bin, x0 + (k+1)*bin): evselect starts the first bin at
    ``ximagemin - 0.5`` and makes (ximagemax - ximagemin)/bin + 1 of them. Read off a real
    SAS 13.5 image (../shared/data/xmm_a907_0201903501, XPROC0: ximagemin=3649
    ximagemax=48106 ximagebinsize=87 -> 512 pixels, LTV1 -41.437: pixel 1 spans
    3648.5-3735.5)."""
    lo = x0 + 0.5
    return lo, lo + (n - 1) * binsize


def evselect_image(table: Path, cam: str, band_ev: tuple[int, int], grid, imageset: str, std_expr: str) -> SasTask:
    """Sky image on exactly the native image grid (4" pixels), so both paths share regions;
    PI in [lo:hi] with both ends included, as the native images and the SAS images of XGA."""
    x_lo, x_hi = evselect_image_range(grid.x0, grid.n, grid.binsize)
    y_lo, y_hi = evselect_image_range(grid.y0, grid.n, grid.binsize)
    expr = f"{std_expr} && (PI in [{band_ev[0]}:{band_ev[1]}])"
    return SasTask("evselect", [("table", str(table)), ("withimageset", "yes"), ("imageset", imageset),
                                ("xcolumn", "X"), ("ycolumn", "Y"), ("imagebinning", "binSize"),
                                ("ximagebinsize", f"{grid.binsize:g}"), ("yimagebinsize", f"{grid.binsize:g}"),
                                ("withxranges", "yes"), ("ximagemin", f"{x_lo:g}"), ("ximagemax", f"{x_hi:g}"),
                                ("withyranges", "yes"), ("yimagemin", f"{y_lo:g}"), ("yimagemax", f"{y_hi:g}"),
                                ("expression", expr)], [imageset])


def eexpmap(imageset: str, eventset: Path, attitudeset: Path, band_ev: tuple[int, int], expimageset: str) -> SasTask:
    return SasTask("eexpmap", [("imageset", imageset), ("eventset", str(eventset)), ("attitudeset", str(attitudeset)),
                               ("expimageset", expimageset), ("pimin", str(band_ev[0])), ("pimax", str(band_ev[1])),
                               ("withdetcoords", "no")], [expimageset])


def edetect_chain(imagesets: list[str], eventsets: list[Path], attitudeset: Path, bands_ev: list[tuple[int, int]],
                  likemin: float = 10.0, mllistset: str = "emllist.fits") -> SasTask:
    """Standard EPIC source detection on the given images; ``bands_ev`` holds the band of
    each image, in the order of ``imagesets`` (edetect_chain documentation: it checks that
    the numbers of pimin/pimax values match the number of images and stops otherwise;
    ecf gets one value per image too). Source extent is fitted so that extended emission
    is told from point sources (emldetect's EXT/EXT_ML columns)."""
    if len(bands_ev) != len(imagesets):
        raise ValueError("edetect_chain: one band per image")
    pimin = " ".join(str(b[0]) for b in bands_ev)
    pimax = " ".join(str(b[1]) for b in bands_ev)
    ecf = " ".join("1.0" for _ in imagesets)
    return SasTask("edetect_chain", [("imagesets", " ".join(imagesets)),
                                     ("eventsets", " ".join(str(e) for e in eventsets)),
                                     ("attitudeset", str(attitudeset)), ("pimin", pimin), ("pimax", pimax),
                                     ("likemin", f"{likemin:g}"), ("witheexpmap", "yes"), ("ecf", ecf),
                                     ("eboxl_list", "eboxlist_l.fits"), ("eboxm_list", "eboxlist_m.fits"),
                                     ("eml_fitextent", "yes"), ("esp_withootset", "no"), ("eml_list", mllistset)],
                   [mllistset])


EXT_ML_MIN = 10.0       # emldetect's default dmlextmin: extent likelihood needed to call a source extended


def read_emllist(path: Path, likemin: float = 10.0) -> list[dict]:
    """Point sources from an emldetect list: summary rows (ID_INST == 0) with DET_ML >=
    ``likemin`` that are not extended (the emldetect output table: EXT = extent in image
    pixels, EXT_ML = likelihood of extent; extended = EXT > 0 with EXT_ML >= dmlextmin)."""
    with fits.open(path) as h:
        d = h[1].data
        cols = d.columns.names
        rows = d[d["ID_INST"] == 0] if "ID_INST" in cols else d
        out = []
        for r in rows:
            extended = "EXT" in cols and float(r["EXT"]) > 0 and ("EXT_ML" not in cols or float(r["EXT_ML"]) >= EXT_ML_MIN)
            if float(r["DET_ML"]) < likemin or extended:
                continue                      # extended detections are the cluster, not point sources
            out.append({"ra": float(r["RA"]), "dec": float(r["DEC"]), "counts": float(r["SCTS"]) if "SCTS" in cols else 0.0,
                        "det_ml": float(r["DET_ML"])})
        return out


def atthkgen(atthkset: str = "atthk.fits") -> SasTask:
    return SasTask("atthkgen", [("atthkset", atthkset), ("timestep", "1")], [atthkset])


def run_sas_images(paths: ObsPaths, cameras: list[str], grid, timeout: float = 7200.0) -> tuple[dict, list[dict]]:
    """Images (evselect on the native grid), exposure maps (eexpmap) and the point-source
    list (edetect_chain) for step 2; returns ({cam: {band: (img, expmap)}}, sources)."""
    from xmmext.sky.images import BANDS_KEV, DETECT_BAND
    filt = read_json(paths.events / "filtering.json", "filtering.json of step 1")
    work = paths.regions / "sas"
    work.mkdir(parents=True, exist_ok=True)
    env_extra = observation_sas_env(paths)
    att = work / "atthk.fits"
    if not att.exists():
        t = atthkgen()
        t.env.update(env_extra)
        run_in_folder(t, work, paths.logs, timeout)
    maps, det_imgs, det_events = {}, [], []
    for cam in cameras:
        events = paths.clean_events(cam)
        maps[cam] = {}
        for band, (lo, hi) in BANDS_KEV.items():
            b_ev = (int(lo * 1000), int(hi * 1000))
            img, exp = f"{cam}_img_{band}.fits", f"{cam}_exp_{band}.fits"
            run_in_folder(evselect_image(events, cam, b_ev, grid, img, filt[cam]["expression"]), work, paths.logs, timeout)
            t = eexpmap(img, events, att, b_ev, exp)
            t.env.update(env_extra)
            run_in_folder(t, work, paths.logs, timeout)
            maps[cam][band] = (np.asarray(fits.getdata(work / img), float), np.asarray(fits.getdata(work / exp), float))
            for name, m in zip((img, exp), maps[cam][band]):
                if m.shape != (grid.n, grid.n):
                    raise SasTaskError(f"{name} is {m.shape[1]}x{m.shape[0]} pixels, expected the "
                                       f"{grid.n}x{grid.n} grid of the native images", work / name)
            if band == DETECT_BAND:
                det_imgs.append(str(work / img))          # a list argument: absolute paths
                det_events.append(events)
    lo, hi = BANDS_KEV[DETECT_BAND]
    t = edetect_chain(det_imgs, det_events, att, [(int(lo * 1000), int(hi * 1000))] * len(det_imgs))
    t.env.update(env_extra)
    run_in_folder(t, work, paths.logs, timeout)
    return maps, read_emllist(work / "emllist.fits")
