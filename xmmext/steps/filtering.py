"""Step 1: flare-cleaned event lists, GTIs and light curves (``run_filtering.sh``).

Options: :class:`FilterOptions`. Inputs: the event list chosen per camera in
data/<OBSID>/event/ (native) or the ODF (SAS). Outputs in results/<OBSID>/events/:
<cam>_clean_evt.fits, <cam>_gti.fits, <cam>_lc.fits, <cam>_lc.png; record filtering.json.
The work: :mod:`xmmext.events.cleaning` (native), :mod:`xmmext.sas.filtering` (SAS).
"""
from __future__ import annotations

from dataclasses import dataclass

import xmmext.instrument as ins
from xmmext.sas.backend import choose_backend
from xmmext.events.selection import compile_expression
from xmmext.events.gti import validate_method
from xmmext.core.errors import UsageError
from xmmext.core.paths import CAMERAS, ObsPaths
import xmmext.core.values as V
from xmmext.steps.base import Plan, Step, StepResult, finish_plan, no_usable, option, require

__all__ = ["FilterOptions", "FilteringStep", "cleaned_event_inputs", "main"]


MIN_BINSIZE_S, MAX_BINSIZE_S = 1.0, 10000.0


@dataclass
class FilterOptions:
    """Step-1 settings."""
    method: str = option("auto", "auto (keep the good time of an already-filtered list, else histogram), "
                         "histogram, fixed, ratio or input",
                         choices=["auto", "histogram", "fixed", "ratio", "input"])
    threshold_mos: float = option(0.35, "fixed method: MOS rate cut (ct/s)", parse=V.positive_float)
    threshold_pn: float = option(0.4, "fixed method: pn rate cut (ct/s)", parse=V.positive_float)
    sigma: float = option(3.0, "histogram/ratio: kept range in sigma", parse=V.positive_float)
    binsize: float = option(100.0, "light-curve bin (s)", parse=V.positive_float)
    min_gti: float = option(100.0, "drop good intervals shorter than this (s)", parse=V.non_negative_float)
    expression_mos: str | None = option(None, "event filter for MOS (default: the standard one)")
    expression_pn: str | None = option(None, "event filter for pn (default: the standard one)")
    cameras: tuple = option(CAMERAS, "cameras to process (subset of mos1,mos2,pn)", parse=V.cameras)
    timeout: float = option(7200.0, "SAS backend: per-task timeout (s)", parse=V.positive_float,
                            fingerprint=False)

    def threshold(self, cam: str) -> float:
        return self.threshold_pn if cam == "pn" else self.threshold_mos

    def expression(self, cam: str) -> str:
        user = self.expression_pn if cam == "pn" else self.expression_mos
        return user or ins.camera(cam).standard_expression

    def validate(self) -> None:
        validate_method(self.method)
        for name in ("threshold_mos", "threshold_pn", "sigma", "binsize", "timeout"):
            V.check(self, name, V.positive_float)
        V.check(self, "min_gti", V.non_negative_float)
        if not MIN_BINSIZE_S <= self.binsize <= MAX_BINSIZE_S:     # bins of 1e-9 s: 10^13 of them
            raise UsageError(f"--binsize must be {MIN_BINSIZE_S:g}-{MAX_BINSIZE_S:g} s (light-curve bin), "
                             f"got {self.binsize:g}")
        self.cameras = V.camera_tuple(self.cameras)
        for cam in self.cameras:
            compile_expression(self.expression(cam))   # fail early on a bad expression


class FilteringStep(Step):
    name = "filtering"
    script = "bash run_filtering.sh {obsid}"
    Options = FilterOptions

    def plan(self, paths: ObsPaths, opts: FilterOptions, backend: str = "auto") -> Plan:
        opts.validate()
        chosen = choose_backend(backend, paths)
        inputs, odf = [], []
        if chosen == "sas":          # gigabytes of raw telemetry, never rewritten: by size + mtime
            odf = sorted(p for p in paths.odf.rglob("*") if p.is_file()) if paths.odf.is_dir() else []
        else:
            from xmmext.events.cleaning import check_observation
            from xmmext.events.reader import exposures_to_use, find_event_files
            found = {c: files for c, files in find_event_files(paths).items() if c in opts.cameras}
            check_observation(paths, found)        # another observation's list: exit 2, before anything
            inputs = [f for c in found for f in exposures_to_use(found[c])[0]]
        return finish_plan(Plan(self, opts, chosen, inputs, paths.events / "filtering.json",
                                [paths.events], paths, stat_inputs=odf))

    def run(self, plan: Plan) -> StepResult:
        paths, opts = plan.context, plan.options
        if plan.backend == "sas":
            from xmmext.sas.filtering import run_sas_filtering
            summary, written = run_sas_filtering(paths, opts, timeout=opts.timeout)
        else:
            from xmmext.events.cleaning import filter_observation
            summary, written = filter_observation(paths, opts)
        failure = None
        if not any(s.get("status") == "ok" for s in summary.values()):
            failure = no_usable("no usable camera after filtering",
                                {c: s.get("reason") for c, s in summary.items()}, plan.record)
        return StepResult(summary, written, failure)

    # filtering.json is {camera: {...}} (DESIGN.md): every camera's entry carries the record
    def attach_record(self, summary: dict, record: dict) -> dict:
        return {cam: {**entry, "step": record} for cam, entry in summary.items()}

    def record_in(self, summary: dict) -> dict | None:
        recs = [e.get("step") for e in summary.values() if isinstance(e, dict)]
        return recs[0] if recs and isinstance(recs[0], dict) and all(r == recs[0] for r in recs) else None

    def describe(self, summary: dict) -> str:
        return ", ".join(f"{c} {s['exposure_after_s']:.0f}/{s['exposure_before_s']:.0f} s"
                         for c, s in summary.items() if isinstance(s, dict) and s.get("status") == "ok")


def cleaned_event_inputs(paths: ObsPaths, cameras) -> list:
    """What later steps read of step 1: filtering.json and the cleaned lists (exit 2 with
    what to run when step 1 has not been run)."""
    require(paths.events / "filtering.json", "no cleaned events: run step 1 (run_filtering.sh) first")
    return [paths.events / "filtering.json"] + [paths.clean_events(c) for c in cameras]


def main(argv=None) -> int:
    from xmmext.steps.cli import step_main
    return step_main(FilteringStep(), argv, "run_filtering.sh",
                     "Step 1: flare-cleaned event lists, GTIs and light curves.")

