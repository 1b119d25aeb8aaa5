"""Extraction regions in sky X/Y: membership, areas, and ds9 / evselect forms.

An :class:`ExtractionRegion` is a circle or an annulus around a centre, or any other
shape the ``regions`` package reads, with exclusions (point sources). It writes ds9
files in physical (event X/Y) and fk5 coordinates, the evselect expression SAS accepts,
and reads ds9 files back through the ``regions`` package (which has no 'physical' frame:
physical files are read as pixel regions, the pixels being the event X/Y).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import xmmext.instrument as ins
from xmmext.core.errors import DataError, UsageError

__all__ = ["HEADER", "SKY_FRAMES", "ExtractionRegion", "read_ds9", "read_region_text", "parse_ds9",
           "area_fraction_map"]

HEADER = "# Region file format: DS9 version 4.1\n"


@dataclass
class ExtractionRegion:
    x: float                       # centre, sky pixels
    y: float
    r_in: float                    # sky pixels; 0 for a circle
    r_out: float
    exclude: list = field(default_factory=list)   # [(x, y, r)] in sky pixels
    # any other shape the ``regions`` package reads (ellipse, box, polygon, rotated,
    # elliptical/box annuli), in 0-based pixels of event X/Y (X - 1, Y - 1); then x, y is
    # the centre of its bounding box and r_out the radius of the circle that holds it
    shape: object = None
    exclude_shapes: list = field(default_factory=list)   # excluded shapes other than circles (as ``shape``)

    @property
    def is_annulus(self) -> bool:
        return self.r_in > 0 and self.shape is None

    def contains(self, x, y) -> np.ndarray:
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        if self.shape is not None:
            from regions import PixCoord
            inside = np.asarray(self.shape.contains(PixCoord(x - 1.0, y - 1.0)), bool)
        else:
            d2 = (x - self.x) ** 2 + (y - self.y) ** 2
            inside = (d2 <= self.r_out ** 2) & (d2 >= self.r_in ** 2 if self.is_annulus else True)
        for ex, ey, er in self.exclude:
            inside &= (x - ex) ** 2 + (y - ey) ** 2 > er ** 2
        if self.exclude_shapes:
            from regions import PixCoord
            for s in self.exclude_shapes:
                inside &= ~np.asarray(s.contains(PixCoord(x - 1.0, y - 1.0)), bool)
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
        if self.shape is not None:
            lines.append(_ds9_line(self.shape))
        elif self.is_annulus:
            lines.append(f"annulus({self.x:.2f},{self.y:.2f},{self.r_in:.2f},{self.r_out:.2f})\n")
        else:
            lines.append(f"circle({self.x:.2f},{self.y:.2f},{self.r_out:.2f})\n")
        for ex, ey, er in self.relevant_exclusions():
            lines.append(f"-circle({ex:.2f},{ey:.2f},{er:.2f})\n")
        lines += [f"-{_ds9_line(s)}" for s in self.exclude_shapes]
        return "".join(lines)

    def ds9_fk5(self, ra_pnt: float, dec_pnt: float) -> str:
        ra, dec = ins.sky_to_radec(self.x, self.y, ra_pnt, dec_pnt)
        s = ins.SKY_PIX_ARCSEC
        lines = [HEADER, "fk5\n"]
        if self.shape is not None:
            lines.append(_ds9_line(self.shape.to_sky(ins.sky_wcs(ra_pnt, dec_pnt))))
        elif self.is_annulus:
            lines.append(f'annulus({ra[0]:.6f},{dec[0]:.6f},{self.r_in * s:.3f}",{self.r_out * s:.3f}")\n')
        else:
            lines.append(f'circle({ra[0]:.6f},{dec[0]:.6f},{self.r_out * s:.3f}")\n')
        for ex, ey, er in self.relevant_exclusions():
            era, edec = ins.sky_to_radec(ex, ey, ra_pnt, dec_pnt)
            lines.append(f'-circle({era[0]:.6f},{edec[0]:.6f},{er * s:.3f}")\n')
        lines += [f"-{_ds9_line(x.to_sky(ins.sky_wcs(ra_pnt, dec_pnt)))}" for x in self.exclude_shapes]
        return "".join(lines)

    def evselect_expression(self) -> str:
        """The region as an evselect selection on (X,Y)."""
        if self.shape is not None:
            main = f"((X,Y) IN {_evselect_shape(self.shape)})"
        elif self.is_annulus:
            main = f"((X,Y) IN annulus({self.x:.2f},{self.y:.2f},{self.r_in:.2f},{self.r_out:.2f}))"
        else:
            main = f"((X,Y) IN circle({self.x:.2f},{self.y:.2f},{self.r_out:.2f}))"
        parts = [main] + [f"!((X,Y) IN circle({ex:.2f},{ey:.2f},{er:.2f}))"
                          for ex, ey, er in self.relevant_exclusions()]
        parts += [f"!((X,Y) IN {_evselect_shape(s)})" for s in self.exclude_shapes]
        return " && ".join(parts)


def _ds9_line(reg) -> str:
    """One ds9 line of a ``regions`` shape, without its frame line (pixel shapes in 1-based
    pixels, as ds9 and event X/Y count them: the package adds the 1 when writing)."""
    from regions import Regions
    text = Regions([reg]).serialize(format="ds9", precision=6)
    body = [ln for ln in text.splitlines() if "(" in ln and not ln.startswith(("#", "global"))]
    return body[0].split("#")[0].strip() + "\n"


def _evselect_shape(reg) -> str:
    """The shape in the region syntax evselect (CFITSIO) takes on (X,Y), 1-based."""
    from regions import EllipsePixelRegion, PolygonPixelRegion, RectanglePixelRegion
    if isinstance(reg, PolygonPixelRegion):
        return "polygon(" + ",".join(f"{x + 1:.2f},{y + 1:.2f}" for x, y in zip(reg.vertices.x, reg.vertices.y)) + ")"
    c = reg.center
    ang = float(reg.angle.to_value("deg")) if getattr(reg, "angle", None) is not None else 0.0
    if isinstance(reg, EllipsePixelRegion):        # ds9 and CFITSIO ellipses take semi-axes
        return f"ellipse({c.x + 1:.2f},{c.y + 1:.2f},{reg.width / 2:.2f},{reg.height / 2:.2f},{ang:.2f})"
    if isinstance(reg, RectanglePixelRegion):      # and boxes full widths
        return f"box({c.x + 1:.2f},{c.y + 1:.2f},{reg.width:.2f},{reg.height:.2f},{ang:.2f})"
    raise UsageError(f"a {type(reg).__name__} has no evselect form: use a circle, annulus, ellipse, box or "
                     "polygon with the SAS backend")


SKY_FRAMES = ("fk5", "fk4", "icrs", "galactic", "ecliptic", "j2000", "b1950")


def _frame_of(text: str) -> str:
    """The coordinate frame a ds9 file states (the last one before its first shape)."""
    frame = "physical"
    for line in text.splitlines():
        word = line.split("#")[0].strip().lower().rstrip(";")
        if word in ("physical", "image") + SKY_FRAMES:
            frame = word
        elif word and "(" in word and frame:
            break
    return frame


def read_ds9(path: str | Path, ra_pnt: float | None = None, dec_pnt: float | None = None) -> ExtractionRegion:
    """Read a ds9 region file written by us or by a user, in physical (event X/Y), image
    (the pixels of this pipeline's images, regions/*_images.fits) or sky coordinates (fk5,
    icrs, galactic ...; they need the pointing). One included shape of any kind the
    ``regions`` package reads (circle, annulus, ellipse, box, polygon, rotated, elliptical
    or box annulus) with excluded circles; exit 2 on anything else."""
    path = Path(path)
    text = read_region_text(path)
    frame = _frame_of(text)
    regs = parse_ds9(text, path)
    if not regs:
        raise UsageError("region file holds no region this pipeline understands", path)
    wcs = ins.sky_wcs(ra_pnt, dec_pnt) if ra_pnt is not None else None
    main, exclude, exclude_shapes = None, [], []
    for r in regs:
        r = _to_physical(r, frame, wcs, path)
        if r.meta.get("include", 1) in (0, False):
            (exclude if _is_circle(r) else exclude_shapes).append(_exclusion(r, path))
        elif main is None:
            main = r
        else:
            raise UsageError("region file has more than one included shape", path)
    if main is None:
        raise UsageError("region file has no included shape", path)
    return _region_of(main, exclude, exclude_shapes, path)


def read_region_text(path: Path, what: str = "region file") -> str:
    """The text of a ds9 file a user names (exit 2 when it is not a readable regular text
    file: a FIFO or device would block, a directory is no file)."""
    try:
        if not path.is_file():
            raise UsageError(f"{what} is not a regular file", path)
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what}: {exc.strerror}", path) from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} is not a text file", path) from None


def parse_ds9(text: str, path: Path, what: str = "region file") -> list:
    """The shapes of a ds9 file. The ``regions`` package has no ds9 ``physical`` frame:
    those lines are read as ``image`` (pixel regions, here in event X/Y)."""
    import warnings
    from regions import Regions
    text = "\n".join("image" if line.strip().lower() == "physical" else line for line in text.splitlines())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(Regions.parse(text, format="ds9"))
    except Exception as exc:
        raise UsageError(f"{what} does not parse: {exc}", path) from None


def _to_physical(r, frame: str, wcs, path: Path):
    """A parsed shape in 0-based pixels of event X/Y (sky shapes through the pointing's
    WCS, image shapes through the pipeline's image grid)."""
    from regions import PixelRegion
    include = r.meta.get("include", 1)
    if not _finite(r):
        raise UsageError("region has a centre or radius that is not finite", path)
    if not isinstance(r, PixelRegion) or frame == "image":
        if wcs is None:
            raise UsageError(f"a region in {frame} coordinates needs the observation's pointing", path)
        if frame == "image":
            from xmmext.sky.images import ImageGrid
            w = wcs.wcs
            r = r.to_sky(ImageGrid.around_pointing().wcs(w.crval[0], w.crval[1]))
        try:
            r = r.to_pixel(wcs)
        except Exception as exc:
            raise UsageError(f"region cannot be placed on the sky X/Y grid: {exc}", path) from None
        r.meta["include"] = include
    return r


def _finite(r) -> bool:
    """Whether every number of a parsed shape (centre, vertices, sizes) is finite."""
    values = []
    for name in ("center", "vertices"):
        c = getattr(r, name, None)
        if c is None:
            continue
        if hasattr(c, "spherical"):            # a SkyCoord, in any frame
            values += list(np.atleast_1d(c.spherical.lon.deg)) + list(np.atleast_1d(c.spherical.lat.deg))
        else:
            values += list(np.atleast_1d(c.x)) + list(np.atleast_1d(c.y))
    for name in ("radius", "inner_radius", "outer_radius", "width", "height", "inner_width", "outer_width",
                 "inner_height", "outer_height"):
        v = getattr(r, name, None)
        if v is not None:
            values.append(v.to_value() if hasattr(v, "to_value") else v)
    return all(math.isfinite(float(v)) for v in np.ravel(values))


def _is_circle(r) -> bool:
    from regions import CirclePixelRegion
    return isinstance(r, CirclePixelRegion)


def _exclusion(r, path: Path):
    """An excluded circle as (x, y, r) in event X/Y; another excluded shape as it is."""
    x, y, rad = (r.center.x + 1.0, r.center.y + 1.0, float(r.radius)) if _is_circle(r) else _bounding_circle(r)
    if not all(math.isfinite(float(v)) for v in (x, y, rad)):
        raise DataError("an excluded region lies outside the field of view", path)
    return (float(x), float(y), float(rad)) if _is_circle(r) else r


def _bounding_circle(r) -> tuple:
    """Centre (event X/Y, 1-based) and radius of the circle about the shape's bounding box."""
    bb = r.bounding_box
    cx, cy = (bb.ixmin + bb.ixmax - 1) / 2.0, (bb.iymin + bb.iymax - 1) / 2.0
    half = math.hypot(bb.ixmax - bb.ixmin, bb.iymax - bb.iymin) / 2.0 + 1.0
    return cx + 1.0, cy + 1.0, half


def _region_of(r, exclude: list, exclude_shapes: list, path: Path) -> ExtractionRegion:
    """The ExtractionRegion of the included shape (circles and annuli as before; other
    shapes kept as they are, with their bounding circle)."""
    from regions import CircleAnnulusPixelRegion, CirclePixelRegion
    if isinstance(r, CirclePixelRegion):
        cx, cy, rin, rout, shape = r.center.x + 1.0, r.center.y + 1.0, 0.0, float(r.radius), None
    elif isinstance(r, CircleAnnulusPixelRegion):
        cx, cy, shape = r.center.x + 1.0, r.center.y + 1.0, None
        rin, rout = float(r.inner_radius), float(r.outer_radius)
    else:
        try:
            cx, cy, rout = _bounding_circle(r)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"region has no area: {exc}", path) from None
        rin, shape = 0.0, r
        if float(r.area) <= 0:
            raise UsageError("region has zero area", path)
    if not all(math.isfinite(float(v)) for v in (cx, cy, rin, rout)):
        raise DataError("the region lies outside the field of view (far from the pointing)", path)
    if rout <= 0 or rout <= rin:
        raise UsageError("region has zero area", path)
    return ExtractionRegion(float(cx), float(cy), float(rin), float(rout), exclude, shape, exclude_shapes)


def area_fraction_map(region: ExtractionRegion, grid, sub: int = 4) -> np.ndarray:
    """Fraction of each image pixel inside the region."""
    from xmmext.sky.images import subpixel_fraction
    return subpixel_fraction(grid, region.contains, sub)
