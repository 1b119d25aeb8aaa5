"""Step 2: images, point sources, source and background regions (``generate_regions.sh``).

Options: :class:`RegionOptions`. Inputs: the cleaned event lists and filtering.json of
step 1. Outputs in results/<OBSID>/regions/: src.reg, bkg.reg (physical), src_sky.reg,
bkg_sky.reg (fk5), ptsrc.reg, <cam>_images.fits, <cam>_expmaps.fits, regions.png,
profile.png; record regions.json. The work: :mod:`xmmext.sky.regions` (SAS images, exposure
maps and detection: :mod:`xmmext.sas.images`).
"""
from __future__ import annotations

from dataclasses import dataclass

from xmmext.sas.backend import choose_backend
from xmmext.core.errors import UsageError
from xmmext.core.paths import CAMERAS, ObsPaths
import xmmext.core.values as V
from xmmext.steps.base import Plan, Step, StepResult, finish_plan, option, require
from xmmext.steps.filtering import cleaned_event_inputs

__all__ = ["MAX_RADIUS_ARCMIN", "MAX_BKG_FACTOR", "RegionOptions", "RegionsStep", "main"]

MAX_RADIUS_ARCMIN = 30.0        # twice the EPIC field of view
MAX_BKG_FACTOR = 10.0           # background annulus out to at most 10 x R


@dataclass
class RegionOptions:
    """Step-2 settings."""
    ra: float | None = option(None, "source centre RA (deg, FK5/ICRS); default: the brightness peak",
                              parse=V.finite_float)
    dec: float | None = option(None, "source centre Dec (deg, FK5/ICRS)", parse=V.finite_float)
    radius: float | None = option(None, "extraction radius in arcmin, or auto (S/N 3 radius)", parse=V.radius,
                                  metavar="ARCMIN|auto")
    bkg_inner: float = option(1.5, "background annulus inner radius, x R", parse=V.positive_float)
    bkg_outer: float = option(2.0, "background annulus outer radius, x R", parse=V.positive_float)
    min_sigma: float = option(5.0, "point-source detection threshold (sigma)", parse=V.positive_float)
    ptsrc: str = option("auto", "point sources to exclude: detect (this observation's), file (--ptsrc-reg only), "
                        "both, or auto (both when --ptsrc-reg is given, else detect)",
                        choices=["auto", "detect", "file", "both"])
    ptsrc_reg: str | None = option(None, "ds9 region file of point sources to exclude (circles, ellipses or points "
                                   "in fk5/icrs/galactic or physical coordinates, e.g. the XCS or 4XMM list)",
                                   metavar="FILE")
    cameras: tuple = option(CAMERAS, "cameras to process (subset of mos1,mos2,pn)", parse=V.cameras)
    timeout: float = option(7200.0, "SAS backend: per-task timeout (s)", parse=V.positive_float,
                            fingerprint=False)

    def validate(self) -> None:
        if (self.ra is None) != (self.dec is None):
            raise UsageError("give both --ra and --dec, or neither")
        if self.ra is not None:
            V.check(self, "ra", V.finite_float)
            V.check(self, "dec", V.finite_float)
            if not (0.0 <= self.ra < 360.0 and -90.0 <= self.dec <= 90.0):
                raise UsageError("--ra must be in [0, 360) and --dec in [-90, 90] degrees")
        if self.radius is not None:
            V.check(self, "radius", V.positive_float)
            if self.radius > MAX_RADIUS_ARCMIN:
                raise UsageError(f"--radius {self.radius:g}' is larger than {MAX_RADIUS_ARCMIN:g}' "
                                 "(the EPIC field of view has a radius of ~15')")
        for name in ("bkg_inner", "bkg_outer", "min_sigma", "timeout"):
            V.check(self, name, V.positive_float)
        if self.ptsrc in ("file", "both") and not self.ptsrc_reg:
            raise UsageError(f"--ptsrc {self.ptsrc} needs --ptsrc-reg FILE")
        if self.ptsrc == "detect" and self.ptsrc_reg:
            raise UsageError("--ptsrc detect ignores --ptsrc-reg: give --ptsrc both or file")
        if not (1.0 <= self.bkg_inner < self.bkg_outer <= MAX_BKG_FACTOR):
            raise UsageError(f"need 1 <= --bkg-inner < --bkg-outer <= {MAX_BKG_FACTOR:g} (multiples of the radius)")
        self.cameras = V.camera_tuple(self.cameras)


class RegionsStep(Step):
    name = "regions"
    script = "bash generate_regions.sh {obsid}"
    Options = RegionOptions

    def plan(self, paths: ObsPaths, opts: RegionOptions, backend: str = "auto") -> Plan:
        opts.validate()
        inputs = cleaned_event_inputs(paths, opts.cameras)
        if opts.ptsrc_reg:
            inputs.append(require(opts.ptsrc_reg, "the point-source list (--ptsrc-reg) does not exist"))
        return finish_plan(Plan(self, opts, choose_backend(backend, paths), inputs,
                                paths.regions / "regions.json", [paths.regions], paths))

    def run(self, plan: Plan) -> StepResult:
        from xmmext.sky.regions import make_regions
        paths, opts = plan.context, plan.options
        result, written = make_regions(paths, opts, _sas_maps(paths, opts) if plan.backend == "sas" else None)
        return StepResult(result, written)

    def describe(self, res: dict) -> str:
        return (f"R = {res['radius_arcmin']:.2f}' at ({res['center']['ra']:.5f}, {res['center']['dec']:.5f}), "
                f"background {res['bkg_inner_arcmin']:.2f}'-{res['bkg_outer_arcmin']:.2f}', "
                f"{len(res['excluded'])} point sources excluded")


def _sas_maps(paths: ObsPaths, opts):
    """Images, eexpmap exposure maps and edetect_chain's source list made by SAS."""
    from xmmext.sas.images import run_sas_images

    def maps(cams, grid):
        return run_sas_images(paths, [c.name for c in cams], grid, opts.timeout)
    return maps


def main(argv=None) -> int:
    from xmmext.steps.cli import step_main
    return step_main(RegionsStep(), argv, "generate_regions.sh",
                     "Step 2: images, point sources, source and background regions.")

