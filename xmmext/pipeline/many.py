"""Many observations: running them (process pool or dask), and combining their fits.

* ``read_obs_list``: one OBSID per line, ``#`` comments and blank lines allowed; bad
  lines are reported with their line numbers (exit 2) before anything runs.
* ``run_many``: every observation through all steps, concurrently: a local process pool
  (``workers``) or dask.distributed (``scheduler='local'`` starts a LocalCluster, an
  address connects to a running scheduler, e.g. one started by dask-jobqueue). One
  failed observation never stops the others; results/failed.txt lists failures.
* ``combine``: every observation's fit.json -> results/multi/<name>/table.csv and
  table.ecsv (with units), weighted means with a chi2 consistency test, and plots.
"""
from __future__ import annotations

import json
import logging
import os
import traceback
from pathlib import Path

from xmmext.core.errors import DependencyError, UsageError, XmmextError
from xmmext.core.fileio import write_text
from xmmext.core.paths import ObsPaths, multi_dir, resolve_workdir, validate_obsid

__all__ = ["SCHEDULER_TIMEOUT_S", "read_obs_list", "process_observation", "run_many", "UNION_FILE", "run_list",
           "write_union", "write_failed", "summary_table", "combine", "joint_fit", "main"]

log = logging.getLogger("xmmext.pipeline.many")
SCHEDULER_TIMEOUT_S = 10


def read_obs_list(path: str | Path) -> list[str]:
    """OBSIDs from a list file; all bad lines are reported at once with their numbers."""
    path = Path(path)
    if not path.is_file():
        raise UsageError("observation list not found", path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"observation list is not a readable text file ({type(exc).__name__})", path) from None
    obsids, bad = [], []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            obsids.append(validate_obsid(line))
        except UsageError:
            bad.append(f"line {n}: {line!r}")
    if bad:
        raise UsageError(f"bad OBSID(s), must be 10 digits: {'; '.join(bad)}", path)
    if not obsids:
        raise UsageError("the observation list holds no OBSID", path)
    if len(set(obsids)) != len(obsids):
        raise UsageError("the observation list repeats an OBSID", path)
    return obsids


def process_observation(obsid: str, settings) -> dict:
    """All steps for one observation in this process (``settings``: a
    :class:`xmmext.steps.run.RunSettings`); never raises (status in the dict)."""
    from xmmext.steps.run import run_observation
    try:
        records = run_observation(obsid, settings, echo=False)
        return {"obsid": obsid, "status": "ok", "steps": {k: r.outcome() for k, r in records.items()}}
    except XmmextError as exc:
        return {"obsid": obsid, "status": "failed", "reason": exc.one_line(), "steps": getattr(exc, "steps", {})}
    except Exception as exc:    # an unexpected failure of one observation must not stop the others
        return {"obsid": obsid, "status": "failed", "reason": f"internal error: {type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=3)}


def run_many(obsids: list[str], workdir, settings, workers: int | None = None,
             scheduler: str | None = None) -> list[dict]:
    """Process observations concurrently; returns one status dict per OBSID (input order)."""
    from dataclasses import replace
    workdir = str(resolve_workdir(workdir))
    settings = replace(settings, workdir=workdir)
    workers = workers or max(1, (os.cpu_count() or 2) - 1)
    if scheduler:
        from dask.distributed import Client, LocalCluster
        if scheduler == "local":
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            try:
                cluster, client = None, Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
            except (OSError, TimeoutError) as exc:
                raise DependencyError(f"cannot reach the dask scheduler at {scheduler} within "
                                      f"{SCHEDULER_TIMEOUT_S} s ({type(exc).__name__})") from None
        try:
            futures = client.map(process_observation, obsids, [settings] * len(obsids), pure=False)
            results = client.gather(futures)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif workers == 1 or len(obsids) == 1:
        results = [process_observation(o, settings) for o in _progress(obsids)]
    else:
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing as mp
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futs = [pool.submit(process_observation, o, settings) for o in obsids]
            results = [f.result() for f in _progress(futs)]
    write_failed(results, workdir)
    return results


UNION_FILE = "ptsrc_union.reg"


def run_list(obsids: list[str], name: str, workdir, settings, workers: int | None = None,
             scheduler: str | None = None) -> list[dict]:
    """Every observation of a list through all steps, excluding one point-source list in all
    of them: each observation's own detections (and the user's --ptsrc-reg) merged by sky
    position into results/multi/<name>/ptsrc_union.reg, excluded wherever it is exposed,
    so the observations of one target cut the same sky. Steps 1-2 run first (with the union
    of the last run, when there is one: a re-run is then up to date), the union is
    rewritten, then every step runs with it. ``--ptsrc file`` keeps the user's list alone."""
    from dataclasses import replace
    regions = settings.options["regions"]
    if regions.ptsrc == "file":
        return run_many(obsids, workdir, settings, workers, scheduler)
    union = multi_dir(name, workdir) / UNION_FILE
    first = replace(settings, stop_after="regions",
                    options=_with_union(settings.options, union) if union.exists() else settings.options)
    early = {r["obsid"]: r for r in run_many(obsids, workdir, first, workers, scheduler)}
    ok = [o for o in obsids if early[o]["status"] == "ok"]
    if ok:
        write_union(ok, workdir, union, regions)
        full = run_many(ok, workdir, replace(settings, options=_with_union(settings.options, union)), workers,
                        scheduler)
        for r in full:          # a step done in the first pass and up to date in the second was done
            first_steps = early[r["obsid"]].get("steps", {})
            r["steps"] = {k: first_steps[k] if v.startswith("skipped") and first_steps.get(k, "").startswith("done")
                          else v for k, v in r.get("steps", {}).items()}
            early[r["obsid"]] = r
    results = [early[o] for o in obsids]
    write_failed(results, workdir)
    return results


def _with_union(options: dict, union: Path) -> dict:
    from dataclasses import replace
    return {**options, "regions": replace(options["regions"], ptsrc="both", ptsrc_reg=str(union))}


def write_union(obsids: list[str], workdir, dest: Path, regions_opts) -> Path:
    """The union of the observations' own detections and the user's list (merged by sky
    position: :func:`xmmext.sky.source_lists.merge_lists`), as a ds9 fk5 file."""
    from xmmext.sky.detect import Source
    from xmmext.core.fileio import read_record
    from xmmext.sky.source_lists import merge_lists, read_source_list, source_list_text
    lists, tangent = [], None            # tangent point of the merged list's X/Y (not written)
    for o in sorted(obsids):
        reg = read_record(ObsPaths.of(o, workdir).regions / "regions.json")
        tangent = tangent or (reg["center"]["ra"], reg["center"]["dec"])
        lists.append([Source(e["x"], e["y"], e["ra"], e["dec"], _number(e["counts"]), _number(e["significance"]),
                             e["radius_arcsec"], None, f"detected in {o}") for e in reg.get("detected", [])])
    if regions_opts.ptsrc_reg:
        lists.append(read_source_list(regions_opts.ptsrc_reg, *tangent, allow_physical=False))
    merged = merge_lists(lists, *tangent)
    return write_text(dest, source_list_text(merged, f"point sources of {len(obsids)} observations merged by "
                                                    f"position ({', '.join(sorted(obsids))})"))


def _number(v) -> float:
    return float("nan") if v is None else float(v)


def _progress(items):
    try:
        from tqdm import tqdm
        return tqdm(items, desc="observations", unit="obs", disable=None)
    except ImportError:
        return items


def write_failed(results: list[dict], workdir) -> Path:
    dest = Path(workdir) / "results" / "failed.txt"
    failed = [r for r in results if r["status"] != "ok"]
    write_text(dest, "".join(f"{r['obsid']}\t{r['reason']}\n" for r in failed) if failed else "")
    return dest


def summary_table(results: list[dict]) -> str:
    steps = ["filtering", "regions", "spectra", "fit", "report"]
    lines = [f"{'OBSID':<12}" + "".join(f"{s:<12}" for s in steps) + "result"]
    for r in results:
        cells = []
        for s in steps:
            o = r.get("steps", {}).get(s, "-")
            cells.append("skipped" if o.startswith("skipped") else ("done" if o.startswith("done") else
                                                                      ("failed" if o.startswith("failed") else "-")))
        lines.append(f"{r['obsid']:<12}" + "".join(f"{c:<12}" for c in cells) +
                     ("ok" if r["status"] == "ok" else r.get("reason", "failed")))
    return "\n".join(lines)


def combine(obsids: list[str], name: str, workdir=None, force: bool = False) -> dict:
    """The combine step (unless up to date): results/multi/<name>/; summary.json's content."""
    from xmmext.steps.base import execute
    from xmmext.steps.combine import CombineOptions, CombineStep
    opts = CombineOptions(name=name, obsids=tuple(obsids), workdir=None if workdir is None else str(workdir))
    return execute(CombineStep().plan(None, opts), force).summary


def joint_fit(obsids: list[str], name: str, workdir, fit_opts, force: bool = False) -> dict:
    """The joint-fit step (unless up to date): results/multi/<name>/joint/; fit.json's content."""
    from xmmext.steps.base import execute
    from xmmext.steps.combine import JointFitOptions, JointFitStep
    opts = JointFitOptions(name=name, obsids=tuple(obsids), workdir=None if workdir is None else str(workdir),
                           fit=fit_opts)
    return execute(JointFitStep().plan(None, opts), force).summary


# --- command line --------------------------------------------------------------------------------
def main(argv=None) -> int:
    from dataclasses import replace
    from xmmext.core.cli import base_parser, setup_logging
    from xmmext.core.paths import validate_name
    from xmmext.steps.cli import add_runner_options
    from xmmext.steps.run import RunSettings, add_pipeline_options, step_options_from
    from xmmext.core.values import positive_int
    p = base_parser("multi_observation_analysis.py", "Step 5: many observations: run, combine.")
    p.add_argument("--list", required=True, help="file with one OBSID per line (# comments allowed)")
    p.add_argument("name_positional", nargs="?", metavar="name",
                   help="name of the combined result (results/multi/<name>), as the pipeline's --list takes it")
    p.add_argument("--name", default=None, help="the same, as an option (default: combined)")
    p.add_argument("--run-missing", action="store_true", help="run the pipeline for observations without a fit")
    p.add_argument("--workers", type=positive_int, default=None, help="parallel processes (default: cores - 1)")
    p.add_argument("--scheduler", help="dask scheduler address, or 'local' for a local dask cluster")
    p.add_argument("--joint", action="store_true", help="also one joint fit of all observations' spectra")
    add_runner_options(p)
    add_pipeline_options(p)
    args = p.parse_args(argv)
    setup_logging(args.debug, args.quiet)
    if args.name and args.name_positional and args.name != args.name_positional:
        raise UsageError(f"two different names given: {args.name_positional}, {args.name}")
    args.name = args.name or args.name_positional or "combined"
    validate_name(args.name)
    obsids = read_obs_list(args.list)
    step_options = step_options_from(args)
    if args.run_missing:
        todo = [o for o in obsids if not (ObsPaths.of(o, args.workdir).fit / "fit.json").exists()]
        if todo:
            settings = RunSettings(step_options, args.backend, args.force, args.workdir, args.name)
            print(summary_table(run_list(todo, args.name, args.workdir, settings, args.workers, args.scheduler)))
    summary = combine(obsids, args.name, args.workdir, args.force)
    for pname, m in summary["weighted_means_1sigma"].items():
        if m["mean"] is not None:
            print(f"{pname:<22} weighted mean {m['mean']:.4g} +- {m['error']:.2g} (n={m['n']})")
    if args.joint:
        done = [o for o in obsids if (ObsPaths.of(o, args.workdir).fit / "fit.json").exists()]
        fit_opts = step_options["fit"]
        if not hasattr(args, "model"):        # the model of the observations' own fits
            fit_opts = replace(fit_opts, model=json.loads((ObsPaths.of(done[0], args.workdir).fit /
                                                           "fit.json").read_text())["model"])
        res = joint_fit(done, args.name, args.workdir, fit_opts, args.force)
        st = res["statistic"]
        print(f"joint fit of {len(done)} observations: {st['name']} {st['value']:.1f}/{st['dof']}")
        for pname, r in res["parameters"].items():
            if not r["frozen"] and not pname.startswith("cross_norm"):
                print(f"  {pname:<22} {r['value']:.4g} ({r['lower']} .. {r['upper']})")
    print(f"combined table: {multi_dir(args.name, args.workdir) / 'table.csv'}")
    return 0
