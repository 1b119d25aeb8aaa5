"""All steps for one observation (or a list), and the embedded demo.

``bash run_extended_source_analysis.sh <OBSID> <name>`` runs every step that exists for
one observation; ``--demo`` first simulates the embedded observation (0999990101,
fixed seed) into the work directory; ``--list obs_list.txt <name>`` runs every
observation of a list (in parallel) and combines their fits. Each step is a function of
(paths, args) that skips itself when its outputs are up to date.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Callable

from .cli import base_parser, run_main, setup_logging
from .errors import XmmextError
from .layout import ObsPaths, validate_name

log = logging.getLogger("xmmext.pipeline")
DEMO_OBSID = "0999990101"
DEMO_SEED = 42


@dataclass
class Step:
    name: str
    run: Callable
    issue: int


def _filtering(paths: ObsPaths, args) -> str:
    from .backends import choose_backend
    from .filtering import FilterOptions, run_filtering
    backend = choose_backend(args.backend, paths)
    opts = FilterOptions()
    if backend == "sas":
        from .sas import run_sas_filtering
        summary = run_sas_filtering(paths, opts, force=args.force)
    else:
        summary = run_filtering(paths, opts, force=args.force)
    ok = [c for c, s in summary.items() if s.get("status") == "ok"]
    skipped = all(s.get("up_to_date") for c, s in summary.items() if s.get("status") == "ok")
    kept = ", ".join(f"{c} {s['exposure_after_s']:.0f}/{s['exposure_before_s']:.0f} s" for c, s in summary.items()
                     if s.get("status") == "ok")
    return ("skipped (up to date)" if skipped else "done") + f": {kept}" if ok else "failed"


def _regions(paths: ObsPaths, args) -> str:
    from .backends import choose_backend
    from .regions import RegionOptions, run_regions
    res = run_regions(paths, RegionOptions(), force=args.force, backend=choose_backend(args.backend, paths))
    state = "skipped (up to date)" if res.get("up_to_date") else "done"
    return (f"{state}: R = {res['radius_arcmin']:.2f}', background {res['bkg_inner_arcmin']:.2f}'-"
            f"{res['bkg_outer_arcmin']:.2f}', {len(res['excluded'])} point sources excluded")


def _spectra(paths: ObsPaths, args) -> str:
    from .backends import choose_backend
    from .spectra import SpectraOptions, run_spectra
    if choose_backend(args.backend, paths) == "sas":          # every step honours --backend
        from .sas import run_sas_spectra
        res = run_sas_spectra(paths, SpectraOptions().cameras)
        return "done (sas): " + ", ".join(c for c, s in res["cameras"].items() if s.get("status") == "ok")
    res = run_spectra(paths, SpectraOptions(), force=args.force)
    ok = {c: s for c, s in res["cameras"].items() if s.get("status") == "ok"}
    state = "skipped (up to date)" if all(s.get("up_to_date") for s in ok.values()) else "done"
    return f"{state}: " + ", ".join(f"{c} {s['net_counts']:.0f} net counts" for c, s in ok.items())


def _fit(paths: ObsPaths, args) -> str:
    from .fileio import is_up_to_date
    from .fitting import FitOptions, run_fit
    model = args.model
    out = [paths.fit / "fit.json"]
    inputs = sorted(paths.spectra.glob("*.pha")) + sorted(paths.spectra.glob("*.?rf"))
    if not args.force and is_up_to_date(out, inputs):
        res = json.loads(out[0].read_text())
        if res.get("model") == model:
            return "skipped (up to date): " + _fit_summary(res)
    opts = FitOptions(model=model, nh=args.nh, redshift=args.redshift, engine=args.engine)
    res = run_fit(paths.spectra, paths.fit, opts)
    return "done: " + _fit_summary(res)


def _fit_summary(res: dict) -> str:
    pars = res["parameters"]
    kt = next((k for k in pars if k.endswith(".kT") and not pars[k]["frozen"]), None)
    st = res["statistic"]
    txt = f"stat {st['value']:.1f}/{st['dof']}"
    if kt:
        p = pars[kt]
        txt += f", {kt} = {p['value']:.2f} ({p['lower']:.2f}-{p['upper']:.2f}, {res['conf_level']}%)"
    return txt


STEPS = [
    Step("filtering", _filtering, 3),
    Step("regions", _regions, 4),
    Step("spectra", _spectra, 5),
    Step("fit", _fit, 6),
]


def _report(paths: ObsPaths, args) -> str:
    from .report import build_report
    name = getattr(args, "name", None) or "source"
    cmds = [f"bash run_filtering.sh {paths.obsid} --workdir {paths.workdir}",
            f"bash generate_regions.sh {paths.obsid} --workdir {paths.workdir}",
            f"python spectral_analysis.py --obsid {paths.obsid} --workdir {paths.workdir}",
            f"python xspec_analysis.py --input {paths.spectra} --model '{args.model}'"
            + (f" --nh {args.nh}" if args.nh is not None else "")
            + (f" --redshift {args.redshift}" if args.redshift is not None else "")]
    dest = build_report(paths, name, cmds)
    return f"done: {dest}"


STEPS.append(Step("report", _report, 7))


def run_observation(obsid: str, name: str, args, echo: bool = True) -> dict[str, str]:
    """Run the steps for one observation; return {step: outcome}.

    On failure the exception is re-raised with the outcomes so far attached (``.steps``).
    """
    paths = ObsPaths.of(obsid, args.workdir)
    outcome: dict[str, str] = {}
    for step in STEPS:
        t0 = time.monotonic()
        try:
            outcome[step.name] = step.run(paths, args)
        except XmmextError as exc:
            outcome[step.name] = f"failed: {exc.one_line()}"
            if echo:
                print(f"[{obsid}] {step.name:<10} {outcome[step.name]}", flush=True)
            exc.steps = outcome
            raise
        if echo:
            print(f"[{obsid}] {step.name:<10} {outcome[step.name]} ({time.monotonic() - t0:.1f} s)", flush=True)
    return outcome


def build_parser():
    p = base_parser("run_extended_source_analysis.sh",
                    "All analysis steps for one XMM observation (or the embedded demo).")
    p.add_argument("obsid", nargs="?", help="10-digit OBSID")
    p.add_argument("name", nargs="?", help="source/run name ([A-Za-z0-9_.+-]{1,64})")
    p.add_argument("--demo", action="store_true", help="simulate the embedded observation and analyse it")
    p.add_argument("--list", dest="obs_list", help="file of OBSIDs: run all, then combine (give <name> too)")
    p.add_argument("--workers", type=int, default=None, help="--list: parallel processes (default cores-1)")
    p.add_argument("--scheduler", help="--list: dask scheduler address or 'local'")
    p.add_argument("--backend", default="auto", choices=["auto", "native", "sas"])
    p.add_argument("--force", action="store_true", help="redo steps even if up to date")
    p.add_argument("--model", default=None, help="XSPEC model (default tbabs*(apec+powerlaw); "
                   "the demo uses tbabs*(bremss+powerlaw) when AtomDB is absent)")
    p.add_argument("--nh", type=float, help="Galactic absorbing column (1e22 cm^-2), frozen in the fit")
    p.add_argument("--redshift", type=float, help="source redshift (frozen)")
    p.add_argument("--engine", default="auto", choices=["auto", "sherpa", "pyxspec"])
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug, args.quiet)
    if args.obs_list:
        return _run_list(args)
    if args.demo:
        from .atomdb import find_apec_files
        from .simulate import SimConfig, simulate
        obsid, name = DEMO_OBSID, args.name or "demo_cluster"
        paths = ObsPaths.of(obsid, args.workdir)
        if args.force or not paths.truth.exists():
            print(f"[{obsid}] simulate   writing the simulated observation to {paths.data}", flush=True)
            simulate(SimConfig(obsid=obsid, seed=DEMO_SEED), args.workdir)
        else:
            print(f"[{obsid}] simulate   skipped (already in {paths.data}; --force to redo)", flush=True)
        truth = json.loads(paths.truth.read_text())["cluster"]
        thermal = "apec" if find_apec_files() else "bremss"
        if args.model is None:
            args.model = f"tbabs*({thermal}+powerlaw)"
            if thermal == "bremss":
                print(f"[{obsid}] note       AtomDB absent: fitting tbabs*(bremss+powerlaw) instead of apec "
                      "(python -m xmmext.atomdb --status)", flush=True)
        # a user gives the Galactic nH and the redshift; for the demo they come from its truth
        args.nh = truth["nH"] if args.nh is None else args.nh
        args.redshift = truth["redshift"] if args.redshift is None else args.redshift
    else:
        if not args.obsid or not args.name:
            from .errors import UsageError
            raise UsageError("give <OBSID> <name>, or --demo")
        obsid, name = args.obsid, args.name
    ObsPaths.of(obsid, args.workdir)
    validate_name(name)
    if args.model is None:
        args.model = "tbabs*(apec+powerlaw)"
    args.name = name
    outcome = run_observation(obsid, name, args)
    paths = ObsPaths.of(obsid, args.workdir)
    if args.demo:
        truth = json.loads(paths.truth.read_text())
        c = truth["cluster"]
        fit = json.loads((paths.fit / "fit.json").read_text())
        kt = next(v for k, v in fit["parameters"].items() if k.endswith(".kT") and not v["frozen"])
        inside = kt["lower"] is not None and kt["lower"] <= c["kT"] <= kt["upper"]
        print(f"demo: fitted kT = {kt['value']:.2f} keV ({kt['lower']:.2f}-{kt['upper']:.2f}, 90%) "
              f"vs true {c['kT']} keV -> {'inside' if inside else 'OUTSIDE'} the interval"
              + ("" if inside else " (a 90% interval misses the truth in 1 realisation of 10; "
                 "coverage over seeds: benchmarks/bench_coverage.py)"))
    print(f"report: {paths.results / 'report.html'}")
    return 0


def _run_list(args) -> int:
    """--list obs_list.txt <name>: every observation through all steps, then combine."""
    from .errors import UsageError
    from .multi import combine, read_obs_list, run_many, summary_table
    name = args.obsid if args.obsid and not args.name else args.name
    if not name:
        raise UsageError("--list needs a name: run_extended_source_analysis.sh --list obs_list.txt <name>")
    validate_name(name)
    obsids = read_obs_list(args.obs_list)
    opts = {"model": args.model or "tbabs*(apec+powerlaw)", "nh": args.nh, "redshift": args.redshift,
            "force": args.force, "backend": args.backend, "engine": args.engine, "name": name}
    results = run_many(obsids, args.workdir, opts, args.workers, args.scheduler)
    print(summary_table(results))
    ok = [r["obsid"] for r in results if r["status"] == "ok"]
    if ok:
        summary = combine(ok, name, args.workdir)
        print(f"combined {summary['n']} observations -> results/multi/{name}/")
    failed = [r for r in results if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} observation(s) failed; see results/failed.txt", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
