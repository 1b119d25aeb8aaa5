"""Extraction regions in sky X/Y: membership, areas, and ds9 / evselect forms.

An :class:`ExtractionRegion` is a circle or an annulus around a centre with circular
exclusions (point sources). It writes ds9 files in physical (event X/Y) and fk5
coordinates, the evselect expression SAS accepts, and reads ds9 files back through the
``regions`` package (which has no 'physical' frame: physical files are read as pixel
regions, the pixels being the event X/Y).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import xmmext.instrument as ins
from xmmext.core.errors import DataError, UsageError

__all__ = ["HEADER", "ExtractionRegion", "read_ds9", "area_fraction_map"]

HEADER = "# Region file format: DS9 version 4.1\n"


@dataclass
class ExtractionRegion:
    x: float                       # centre, sky pixels
    y: float
    r_in: float                    # sky pixels; 0 for a circle
    r_out: float
    exclude: list = field(default_factory=list)   # [(x, y, r)] in sky pixels

    @property
    def is_annulus(self) -> bool:
        return self.r_in > 0

    def contains(self, x, y) -> np.ndarray:
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        d2 = (x - self.x) ** 2 + (y - self.y) ** 2
        inside = (d2 <= self.r_out ** 2) & (d2 >= self.r_in ** 2 if self.is_annulus else True)
        for ex, ey, er in self.exclude:
            inside &= (x - ex) ** 2 + (y - ey) ** 2 > er ** 2
        return inside

    def relevant_exclusions(self) -> list:
        """Exclusions that overlap the region (others are dropped from the files)."""
        out = []
        for ex, ey, er in self.exclude:
            d = np.hypot(ex - self.x, ey - self.y)
            if d - er <= self.r_out and d + er >= self.r_in:
                out.append((ex, ey, er))
        return out

    # -- files ------------------------------------------------------------------------
    def ds9_physical(self) -> str:
        lines = [HEADER, "physical\n"]
        if self.is_annulus:
            lines.append(f"annulus({self.x:.2f},{self.y:.2f},{self.r_in:.2f},{self.r_out:.2f})\n")
        else:
            lines.append(f"circle({self.x:.2f},{self.y:.2f},{self.r_out:.2f})\n")
        for ex, ey, er in self.relevant_exclusions():
            lines.append(f"-circle({ex:.2f},{ey:.2f},{er:.2f})\n")
        return "".join(lines)

    def ds9_fk5(self, ra_pnt: float, dec_pnt: float) -> str:
        ra, dec = ins.sky_to_radec(self.x, self.y, ra_pnt, dec_pnt)
        s = ins.SKY_PIX_ARCSEC
        lines = [HEADER, "fk5\n"]
        if self.is_annulus:
            lines.append(f'annulus({ra[0]:.6f},{dec[0]:.6f},{self.r_in * s:.3f}",{self.r_out * s:.3f}")\n')
        else:
            lines.append(f'circle({ra[0]:.6f},{dec[0]:.6f},{self.r_out * s:.3f}")\n')
        for ex, ey, er in self.relevant_exclusions():
            era, edec = ins.sky_to_radec(ex, ey, ra_pnt, dec_pnt)
            lines.append(f'-circle({era[0]:.6f},{edec[0]:.6f},{er * s:.3f}")\n')
        return "".join(lines)

    def evselect_expression(self) -> str:
        """The region as an evselect selection on (X,Y)."""
        if self.is_annulus:
            main = f"((X,Y) IN annulus({self.x:.2f},{self.y:.2f},{self.r_in:.2f},{self.r_out:.2f}))"
        else:
            main = f"((X,Y) IN circle({self.x:.2f},{self.y:.2f},{self.r_out:.2f}))"
        parts = [main] + [f"!((X,Y) IN circle({ex:.2f},{ey:.2f},{er:.2f}))"
                          for ex, ey, er in self.relevant_exclusions()]
        return " && ".join(parts)


def read_ds9(path: str | Path, ra_pnt: float | None = None, dec_pnt: float | None = None) -> ExtractionRegion:
    """Read a ds9 region file (physical or fk5/icrs) written by us or by a user.

    One circle or annulus (included) plus excluded circles. Sky frames need the pointing
    to convert to event X/Y. Exit 2 on anything that does not parse or has another shape.
    """
    from regions import (CircleAnnulusPixelRegion, CircleAnnulusSkyRegion, CirclePixelRegion,
                         CircleSkyRegion, Regions)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read region file: {exc.strerror}", path) from None
    except UnicodeDecodeError:
        raise UsageError("region file is not a text file", path) from None
    parse_text = "\n".join("image" if line.strip().lower() == "physical" else line
                           for line in text.splitlines())
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            regs = Regions.parse(parse_text, format="ds9")
    except Exception as exc:
        raise UsageError(f"region file does not parse: {exc}", path) from None
    if not regs:
        raise UsageError("region file holds no region this pipeline understands "
                         "(circle or annulus, with -circle exclusions)", path)
    wcs = ins.sky_wcs(ra_pnt, dec_pnt) if ra_pnt is not None else None
    main = None
    exclude = []
    for r in regs:
        was_sky = isinstance(r, (CircleSkyRegion, CircleAnnulusSkyRegion))
        if was_sky:
            if wcs is None:
                raise UsageError("sky region file needs the pointing to convert to X/Y", path)
            sky = [r.center.ra.deg, r.center.dec.deg] + [getattr(r, a).to_value("deg") for a in
                                                         ("radius", "inner_radius", "outer_radius") if hasattr(r, a)]
            if not all(math.isfinite(float(v)) for v in sky):
                raise UsageError("region has a centre or radius that is not finite", path)
            r = r.to_pixel(wcs)
        if isinstance(r, CirclePixelRegion):
            cx, cy, rin, rout = r.center.x, r.center.y, 0.0, r.radius
        elif isinstance(r, CircleAnnulusPixelRegion):
            cx, cy, rin, rout = r.center.x, r.center.y, r.inner_radius, r.outer_radius
        else:
            raise UsageError(f"unsupported region shape {type(r).__name__} (use circle or annulus)", path)
        # regions gives 0-based pixels (ds9 image coordinates and world_to_pixel alike);
        # event X/Y, like ds9 physical coordinates, are 1-based
        cx, cy = cx + 1.0, cy + 1.0
        if not all(math.isfinite(float(v)) for v in (cx, cy, rin, rout)):
            if was_sky:       # the projection about the pointing has no place for it
                raise DataError("the region lies outside the field of view (far from the pointing)", path)
            raise UsageError("region has a centre or radius that is not finite", path)
        if r.meta.get("include", 1) in (0, False):
            exclude.append((float(cx), float(cy), float(rout)))
        elif main is None:
            main = (float(cx), float(cy), float(rin), float(rout))
        else:
            raise UsageError("region file has more than one included shape", path)
    if main is None:
        raise UsageError("region file has no included shape", path)
    if main[3] <= 0 or main[3] <= main[2]:
        raise UsageError("region has zero area", path)
    return ExtractionRegion(main[0], main[1], main[2], main[3], exclude)


def area_fraction_map(region: ExtractionRegion, grid, sub: int = 4) -> np.ndarray:
    """Fraction of each image pixel inside the region."""
    from xmmext.sky.images import subpixel_fraction
    return subpixel_fraction(grid, region.contains, sub)
