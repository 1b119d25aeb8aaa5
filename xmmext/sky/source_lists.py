"""Point-source lists as ds9 region files: read a user's (XCS, 4XMM, one's own), write ours,
and merge several into one (the observations of one target share one list).

A list read here is a set of exclusions: circles (their radius is the exclusion radius),
ellipses (their semi-major axis) and points (the default radius) in any sky frame the
``regions`` package reads (fk5, icrs, galactic, ...), or in the observation's physical
(event X/Y) coordinates. ``image`` coordinates refer to an image this pipeline does not
have and are refused (exit 2) rather than guessed.
"""
from __future__ import annotations

import math
import re
from pathlib import Path


import xmmext.instrument as ins
from xmmext.sky.detect import Source
from xmmext.core.errors import UsageError

__all__ = ["read_source_list", "merge_lists", "source_list_text"]

DEFAULT_RADIUS_ARCSEC = 20.0        # a point region has no radius: about the 85% encircled energy
MERGE_ARCSEC = 10.0                 # detections closer than this are one source
MAX_SOURCES = 20000


def read_source_list(path: str | Path, ra_pnt: float, dec_pnt: float, origin: str | None = None,
                     allow_physical: bool = True) -> list[Source]:
    """The exclusions of a ds9 region file (see the module docstring); ``origin`` labels them.
    ``allow_physical=False`` where the list serves several observations (physical X/Y
    belong to one)."""
    from regions import PixelRegion
    from xmmext.sky.extraction_region import parse_ds9, read_region_text
    path = Path(path)
    text = read_region_text(path, "the point-source list")
    if re.search(r"^\s*image\s*(;|$)", text, flags=re.IGNORECASE | re.MULTILINE):
        raise UsageError("the point-source list is in image coordinates, which refer to an image this pipeline "
                         "does not have: save it in fk5 (ds9: Region > Save > fk5)", path)
    regs = parse_ds9(text, path, "the point-source list")
    if len(regs) > MAX_SOURCES:
        raise UsageError(f"the point-source list has {len(regs)} regions (at most {MAX_SOURCES})", path)
    label = origin or f"file: {path.name}"
    out = []
    for r in regs:
        if isinstance(r, PixelRegion) and not allow_physical:
            raise UsageError("the point-source list is in physical coordinates, which belong to one observation: "
                             "give it in fk5 for a list of observations", path)
        if isinstance(r, PixelRegion):            # physical: event X/Y (1-based, regions gives 0-based)
            x, y = float(r.center.x) + 1.0, float(r.center.y) + 1.0
            radius = _radius_pix(r) * ins.SKY_PIX_ARCSEC
            ra, dec = (float(v[0]) for v in ins.sky_to_radec(x, y, ra_pnt, dec_pnt))
        else:
            c = r.center
            if c.frame.name not in ("fk5", "icrs"):  # the pipeline's RA/Dec are FK5 J2000 = ICRS to 20 mas
                c = c.icrs
            ra, dec = float(c.ra.deg), float(c.dec.deg)
            radius = _radius_sky(r)
            xs, ys = ins.radec_to_sky(ra, dec, ra_pnt, dec_pnt)
            x, y = float(xs[0]), float(ys[0])
        if not all(math.isfinite(v) for v in (x, y, radius)) or radius <= 0:
            raise UsageError(f"a region of the point-source list has no finite position or radius "
                             f"({type(r).__name__})", path)
        out.append(Source(x, y, ra, dec, float("nan"), float("nan"), radius, None, label))
    return out


def _radius_sky(r) -> float:
    """Exclusion radius (arcsec) of a sky region."""
    for attr in ("radius", "outer_radius"):
        if hasattr(r, attr):
            return float(getattr(r, attr).to_value("arcsec"))
    if hasattr(r, "width") and hasattr(r, "height"):
        return 0.5 * max(float(r.width.to_value("arcsec")), float(r.height.to_value("arcsec")))
    if type(r).__name__ == "PointSkyRegion":
        return DEFAULT_RADIUS_ARCSEC
    raise UsageError(f"unsupported shape {type(r).__name__} in the point-source list (circle, ellipse, point)")


def _radius_pix(r) -> float:
    for attr in ("radius", "outer_radius"):
        if hasattr(r, attr):
            return float(getattr(r, attr))
    if hasattr(r, "width") and hasattr(r, "height"):
        return 0.5 * max(float(r.width), float(r.height))
    if type(r).__name__ == "PointPixelRegion":
        return DEFAULT_RADIUS_ARCSEC / ins.SKY_PIX_ARCSEC
    raise UsageError(f"unsupported shape {type(r).__name__} in the point-source list (circle, ellipse, point)")


def merge_lists(lists: list[list[Source]], ra_pnt: float, dec_pnt: float) -> list[Source]:
    """One source per sky position: sources of several lists closer than MERGE_ARCSEC are
    one. Its position is the one of the member a list gives (a user's list is taken as it
    is), else of the most significant detection; its exclusion radius is the largest of
    the members'; every origin is named. X/Y are recomputed for this pointing. The result
    does not depend on the order of the lists, and merging it again with any of them gives
    it back (a --list re-run finds the same union)."""
    flat = [s for lst in lists for s in lst]

    def precedence(s: Source):
        listed = not s.origin.startswith("detected")
        sig = s.significance if math.isfinite(s.significance) else 0.0
        return (not listed, -sig, s.ra, s.dec)
    groups: list[list[Source]] = []
    for s in sorted(flat, key=precedence):
        for g in groups:
            if _sep_arcsec(g[0], s) < MERGE_ARCSEC:
                g.append(s)
                break
        else:
            groups.append([s])
    out = []
    for g in groups:
        head = g[0]
        x, y = (float(v[0]) for v in ins.radec_to_sky(head.ra, head.dec, ra_pnt, dec_pnt))
        origins = ", ".join(sorted(dict.fromkeys(o for s in g for o in s.origin.split(", "))))
        out.append(Source(x, y, head.ra, head.dec, head.counts, head.significance,
                          max(s.radius_arcsec for s in g), head.extent, origins))
    return out


def _sep_arcsec(a: Source, b: Source) -> float:
    return math.hypot((a.ra - b.ra) * math.cos(math.radians(b.dec)), a.dec - b.dec) * 3600.0


def source_list_text(sources: list[Source], comment: str) -> str:
    """A ds9 fk5 region file of exclusion circles (what --ptsrc-reg reads back)."""
    lines = ["# Region file format: DS9 version 4.1\n", f"# {comment}\n", "fk5\n"]
    for s in sources:
        label = f"{s.significance:.1f} sigma" if math.isfinite(s.significance) else s.origin
        lines.append(f'circle({s.ra:.6f},{s.dec:.6f},{s.radius_arcsec:.2f}") # text={{{label}}}\n')
    return "".join(lines)
