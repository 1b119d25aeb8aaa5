"""All steps for one observation (or a list), and the embedded demo.

``bash run_extended_source_analysis.sh <OBSID> <name>`` runs every step that exists for
one observation; ``--demo`` first simulates the embedded observation (0999990101,
fixed seed) into the work directory; ``--list obs_list.txt <name>`` runs every
observation of a list (in parallel) and combines their fits. The steps and the options
forwarded to them: :mod:`xmmext.steps`.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace

from xmmext.core.cli import base_parser, run_main, setup_logging
from xmmext.core.errors import UsageError
from xmmext.fitting.flags import summary_line
from xmmext.core.paths import ObsPaths, validate_name
from xmmext.steps.cli import add_runner_options
from xmmext.core.values import positive_int
from xmmext.steps.base import execute
from xmmext.steps import registry
from xmmext.steps.run import RunSettings, add_pipeline_options, check_run, run_observation, step_options_from

__all__ = ["DEMO_OBSID", "DEMO_SEED", "build_parser", "main"]

log = logging.getLogger("xmmext.pipeline.run")
DEMO_OBSID = "0999990101"
DEMO_SEED = 42


def build_parser():
    p = base_parser("run_extended_source_analysis.sh",
                    "All analysis steps for one XMM observation (or a list, or the embedded demo). "
                    "Every option of a step is forwarded to the step that owns it.")
    p.add_argument("obsid", nargs="?", help="10-digit OBSID")
    p.add_argument("name", nargs="?", help="source/run name ([A-Za-z0-9_.+-]{1,64})")
    p.add_argument("--demo", action="store_true", help="simulate the embedded observation and analyse it")
    p.add_argument("--list", dest="obs_list", help="file of OBSIDs: run all, then combine (give <name> too)")
    p.add_argument("--workers", type=positive_int, default=None, help="--list: parallel processes (default cores-1)")
    p.add_argument("--scheduler", help="--list: dask scheduler address or 'local'")
    for step in registry.OBSERVATION_STEPS:
        if step.optional:
            p.add_argument(f"--{step.name}", action="store_true", help=f"also {step.title}")
    add_runner_options(p)
    add_pipeline_options(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug, args.quiet)
    if args.obs_list:
        return _run_list(args)
    if args.demo:
        obsid, name = DEMO_OBSID, args.name or "demo_cluster"
    else:
        if not args.obsid or not args.name:
            raise UsageError("give <OBSID> <name>, or --demo")
        obsid, name = args.obsid, args.name
    paths = ObsPaths.of(obsid, args.workdir)
    validate_name(name)
    settings = RunSettings(step_options_from(args), args.backend, args.force, args.workdir, name, _extra_steps(args))
    check_run(settings, f"[{obsid}] ")                 # the model settled before anything runs (exit 3)
    if args.demo:
        settings = replace(settings, options=step_options_from(args, **_prepare_demo(args)))
    run_observation(obsid, replace(settings, checked=True))
    if args.demo:
        _compare_with_truth(paths)
    print(f"report: {paths.results / 'report.html'}")
    return 0


def _extra_steps(args) -> tuple:
    """The optional steps the command line asks for."""
    return tuple(s.name for s in registry.OBSERVATION_STEPS if s.optional and getattr(args, s.name, False))


def _prepare_demo(args) -> dict:
    """Simulate the embedded observation (unless there); the fit options a user would give
    for it (Galactic nH and redshift from its truth) unless given. The model is settled
    like any run's (apec with AtomDB, else the zbremss fallback, said before step 1)."""
    from xmmext.simulate.config import SimConfig
    from xmmext.steps.simulate import SimulateStep
    paths = ObsPaths.of(DEMO_OBSID, args.workdir)
    rec = execute(SimulateStep().plan(paths, SimConfig(obsid=DEMO_OBSID, seed=DEMO_SEED)), force=args.force)
    state = "skipped (up to date)" if rec.skipped else "done"
    print(f"[{DEMO_OBSID}] simulate   {state}: {rec.message} in {paths.data}", flush=True)
    truth = json.loads(paths.truth.read_text())["cluster"]
    out = {}
    if not hasattr(args, "nh"):
        out["nh"] = truth["nH"]
    if not hasattr(args, "redshift"):
        out["redshift"] = truth["redshift"]
    return out


def _compare_with_truth(paths: ObsPaths) -> None:
    c = json.loads(paths.truth.read_text())["cluster"]
    fit = json.loads((paths.fit / "fit.json").read_text())
    kt = next(v for k, v in fit["parameters"].items() if k.endswith(".kT") and not v["frozen"])
    inside = kt["lower"] is not None and kt["lower"] <= c["kT"] <= kt["upper"]
    print(f"demo: fitted kT = {kt['value']:.2f} keV ({kt['lower']:.2f}-{kt['upper']:.2f}, 90%) "
          f"vs true {c['kT']} keV -> {'inside' if inside else 'OUTSIDE'} the interval"
          + ("" if inside else " (a 90% interval misses the truth in 1 realisation of 10; "
             "coverage over seeds: benchmarks/bench_coverage.py)"))
    print("demo: " + summary_line(fit.get("flags", [])))


def _run_list(args) -> int:
    """--list obs_list.txt <name>: every observation through all steps, then combine."""
    from xmmext.pipeline.many import combine, read_obs_list, run_list, summary_table
    name = args.obsid if args.obsid and not args.name else args.name
    if not name:
        raise UsageError("--list needs a name: run_extended_source_analysis.sh --list obs_list.txt <name>")
    validate_name(name)
    obsids = read_obs_list(args.obs_list)
    settings = RunSettings(step_options_from(args), args.backend, args.force, args.workdir, name, _extra_steps(args))
    check_run(settings)                                # once, before any observation starts
    results = run_list(obsids, name, args.workdir, settings, args.workers, args.scheduler)
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
