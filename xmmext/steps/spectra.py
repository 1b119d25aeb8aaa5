"""Step 3: source/background spectra, RMF/ARF, BACKSCAL and grouping (``spectral_analysis.py``).

Options: :class:`SpectraOptions`. Inputs: the cleaned event lists and filtering.json of
step 1, the region files (step 2's, or the user's ``--src-reg/--bkg-reg``) and any user
responses. Outputs in results/<OBSID>/spectra/: <cam>_src.pha, <cam>_bkg.pha,
<cam>_src_grp.pha, <cam>.rmf, <cam>.arf, spectra.png; record spectra.json. The work:
:mod:`xmmext.spectra.extraction` (native), :mod:`xmmext.sas.spectra` (SAS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xmmext.sas.backend import choose_backend
from xmmext.core.errors import UsageError
from xmmext.spectra.grouping import DEFAULT_GROUP
from xmmext.steps.fit import BACKGROUNDS
from xmmext.core.paths import CAMERAS, ObsPaths
import xmmext.core.values as V
from xmmext.steps.base import Plan, Step, StepResult, finish_plan, no_usable, option, refuse_inputs_inside, require
from xmmext.steps.filtering import cleaned_event_inputs

__all__ = ["SpectraOptions", "SpectraStep", "main"]


@dataclass
class SpectraOptions:
    """Step-3 settings."""
    src_reg: str | None = option(None, "source region file (ds9, physical or fk5); default: step 2's src.reg")
    bkg_reg: str | None = option(None, "background region file; default: step 2's bkg.reg")
    group: str = option(DEFAULT_GROUP, "grouping: mincounts=N or minsn=S (optionally ,oversample=F: groups at "
                        "least FWHM/F wide, as specgroup), optimal or none")
    cameras: tuple = option(CAMERAS, "cameras to process (subset of mos1,mos2,pn)", parse=V.cameras)
    rmf: dict | None = option(None, "user RMF for a camera, CAMERA=FILE (repeatable)", parse=V.camera_file,
                              multiple=True, collect=V.per_camera, metavar="CAM=FILE")
    arf: dict | None = option(None, "user ARF for a camera, CAMERA=FILE (repeatable)", parse=V.camera_file,
                              multiple=True, collect=V.per_camera, metavar="CAM=FILE")
    background: str = option("auto", "background: auto (local, or model when step 1 found residual soft protons), local (the background annulus subtracted, the source's own emission in it predicted from the beta model and left in), annulus (the plain annulus subtraction), model (source, background and corner spectra fitted together: particles, soft protons, sky and the source's own emission modelled), none", choices=list(BACKGROUNDS))
    timeout: float = option(7200.0, "SAS backend: per-task timeout (s)", parse=V.positive_float,
                            fingerprint=False)
    output: str | None = option(None, "output folder (default: results/<OBSID>/spectra)", pipeline=False)
    plot: bool = field(default=True, metadata={"fingerprint": False})     # spectra.png (not for the annuli)

    def folder(self, paths: ObsPaths) -> Path:
        """Where the spectra go."""
        return Path(self.output) if self.output else paths.spectra

    def validate(self) -> None:
        from xmmext.spectra.grouping import parse_group
        parse_group(self.group)
        self.cameras = V.camera_tuple(self.cameras)
        self.rmf, self.arf = V.per_camera(self.rmf), V.per_camera(self.arf)
        V.check(self, "timeout", V.positive_float)
        from xmmext.spectra.ogip import check_response
        for flag, files, kind in (("--rmf", self.rmf, "RMF"), ("--arf", self.arf, "ARF")):
            for cam, f in (files or {}).items():
                if not Path(f).is_file():
                    raise UsageError(f"{flag} {cam}: file not found", f)
                check_response(f, kind)

    def user_files(self, paths: ObsPaths) -> list[Path]:
        """Every file the spectra depend on besides the events: regions and responses."""
        regs = [Path(self.src_reg or paths.regions / "src.reg"), Path(self.bkg_reg or paths.regions / "bkg.reg")]
        return regs + [Path(f) for files in (self.rmf, self.arf) for f in (files or {}).values()]


class SpectraStep(Step):
    name = "spectra"
    script = "python spectral_analysis.py {obsid}"
    Options = SpectraOptions

    def plan(self, paths: ObsPaths, opts: SpectraOptions, backend: str = "auto") -> Plan:
        opts.validate()
        inputs = cleaned_event_inputs(paths, opts.cameras) + opts.user_files(paths)
        for reg in opts.user_files(paths)[:2]:
            require(reg, "region file not found (run step 2, generate_regions.sh, or give --src-reg/--bkg-reg)")
        chosen = choose_backend(backend, paths)
        if chosen == "sas":
            from xmmext.spectra.grouping import parse_group
            if parse_group(opts.group).kind != "mincounts" or opts.src_reg or opts.bkg_reg or opts.rmf or opts.arf:
                raise UsageError("the SAS path supports the step-2 regions and --group mincounts=N only")
        if chosen == "sas" and opts.output:
            raise UsageError("the SAS path writes results/<OBSID>/spectra only: drop --output")
        out = opts.folder(paths)
        refuse_inputs_inside(opts.user_files(paths)[2:], out)
        return finish_plan(Plan(self, opts, chosen, inputs, out / "spectra.json", [out], paths))

    def run(self, plan: Plan) -> StepResult:
        paths, opts = plan.context, plan.options
        if plan.backend == "sas":
            from xmmext.sas.spectra import run_sas_spectra
            from xmmext.spectra.grouping import parse_group
            spec = parse_group(opts.group)
            summary, written = run_sas_spectra(paths, opts.cameras, int(spec.value), opts.timeout, spec.oversample)
        else:
            from xmmext.spectra.extraction import extract_spectra
            summary, written = extract_spectra(paths, opts, opts.folder(paths), plot=opts.plot)
        failure = None
        if not any(s.get("status") == "ok" for s in summary["cameras"].values()):
            failure = no_usable("no camera gives a spectrum",
                                {c: s.get("reason") for c, s in summary["cameras"].items()}, plan.record)
        return StepResult(summary, written, failure)

    def describe(self, summary: dict) -> str:
        ok = {c: s for c, s in summary["cameras"].items() if s.get("status") == "ok"}
        return ", ".join(f"{c} {s['net_counts']:.0f} net counts" if "net_counts" in s else c for c, s in ok.items())

    def console(self, summary: dict) -> str:
        lines = [self.describe(summary)]
        for cam, s in summary["cameras"].items():
            if s.get("status") == "ok" and "net_counts" in s:
                lines.append(f"  {cam}: {s['counts']} counts, net {s['net_counts']:.0f} +- "
                             f"{s['net_counts_error']:.0f}, {s['groups']} groups -> {s['files']['grp']}")
            elif s.get("status") != "ok":
                lines.append(f"  {cam}: skipped ({s.get('reason')})")
        return "\n".join(lines)


def main(argv=None) -> int:
    from xmmext.steps.cli import step_main
    return step_main(SpectraStep(), argv, "spectral_analysis.py",
                     "Step 3: source/background spectra, RMF/ARF, BACKSCAL, grouping.")

