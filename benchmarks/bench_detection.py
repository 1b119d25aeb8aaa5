"""Issue 23b: point sources against extended structure in the core, over seeds.

Each seed: a simulated cluster (``--preset``, default the demo's) with an arc of extra
emission in its core (``--arc-fraction``, a sloshing cold front) and the usual point
sources, through steps 1 and 2. Measured with the simulator's truth:
  * completeness: point sources with >= 50 counts (all cameras) that are excluded;
  * spurious: exclusions with no simulated point source within 10";
  * the arc's photons left outside every exclusion (what the spectrum keeps of it);
  * every candidate's classification (contrast, extent statistic) by what it really was,
    for the thresholds of :mod:`xmmext.sky.extent` (written to --dump).

    python benchmarks/bench_detection.py [--seeds 1-10] [--preset demo|cool-core] [--arc-fraction 0.05]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmmext.core.paths import ObsPaths  # noqa: E402
from xmmext.simulate.truth import step1_selected  # noqa: E402
from xmmext.simulate.observation import preset_config, simulate  # noqa: E402
from xmmext.steps import FilterOptions, RegionOptions, run_filtering, run_regions  # noqa: E402

MIN_COUNTS = 50
MATCH_ARCSEC = 10.0


def sep_arcsec(a: dict, b: dict) -> float:
    return math.hypot((a["ra"] - b["ra"]) * math.cos(math.radians(b["dec"])), a["dec"] - b["dec"]) * 3600


def arc_kept(paths: ObsPaths, truth: dict, excluded: list[dict]) -> tuple[int, int]:
    """(arc photons outside every exclusion, arc photons) in the cleaned lists."""
    kept = total = 0
    for cam in truth["counts"]:
        ev, sel = step1_selected(paths, cam, ("arc",))
        x, y = ev.columns["X"][sel].astype(float), ev.columns["Y"][sel].astype(float)
        out = np.ones(len(x), bool)
        for e in excluded:
            out &= np.hypot(x - e["x"], y - e["y"]) * 0.05 > e["radius_arcsec"]
        kept += int(out.sum())
        total += len(x)
    return kept, total


def evaluate(paths: ObsPaths, truth: dict, reg: dict) -> dict:
    ps = truth["point_sources"]
    bright = [p for p in ps if sum(p["counts"].values()) >= MIN_COUNTS]
    found = sum(any(sep_arcsec(p, e) < MATCH_ARCSEC for e in reg["excluded"]) for p in bright)
    spurious = sum(not any(sep_arcsec(p, e) < MATCH_ARCSEC for p in ps) for e in reg["excluded"])
    kept, total = arc_kept(paths, truth, reg["excluded"]) if truth["cluster"].get("arc") else (0, 0)
    missed = []
    for p in bright:
        if any(sep_arcsec(p, e) < MATCH_ARCSEC for e in reg["excluded"]):
            continue
        near = [e for e in reg["kept_extended"] if sep_arcsec(p, e) < MATCH_ARCSEC]
        missed.append(f"{sum(p['counts'].values())} counts at {sep_arcsec(p, truth['cluster']) / 60:.1f}': "
                      + (near[0]["classification"] if near else "no candidate"))
    candidates = []
    for kind in ("excluded", "kept_extended"):
        for e in reg[kind]:
            real = any(sep_arcsec(p, e) < MATCH_ARCSEC for p in ps)
            candidates.append({"truth": "point source" if real else "not a source", "excluded": kind == "excluded",
                               "r_arcmin": sep_arcsec(e, truth["cluster"]) / 60,
                               **{k: e.get(k) for k in ("contrast", "extent_dcstat", "extent_sigma_arcsec",
                                                        "significance", "classification")}})
    return {"missed": missed, "bright": len(bright), "found": found, "excluded": len(reg["excluded"]), "spurious": spurious,
            "arc_kept": kept, "arc_total": total, "candidates": candidates}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="1-10")
    p.add_argument("--preset", default="demo")
    p.add_argument("--arc-fraction", type=float, default=0.05)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a simulator setting (SimConfig field, e.g. cluster_rate=2 exposure=20000)")
    p.add_argument("--dump", default=None, help="write every candidate with its truth to this JSON file")
    args = p.parse_args(argv)
    lo, _, hi = args.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    rows, cands = [], []
    wd = Path(tempfile.mkdtemp(prefix="bench_detection_"))
    for seed in seeds:
        obsid = f"09999970{seed:02d}"
        extra = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.set)}
        truth = simulate(preset_config(args.preset, obsid=obsid, seed=seed, arc_fraction=args.arc_fraction, **extra), wd)
        paths = ObsPaths.of(obsid, wd)
        run_filtering(paths, FilterOptions())
        t0 = time.perf_counter()
        reg = run_regions(paths, RegionOptions())
        row = evaluate(paths, truth, reg)
        row["seconds"] = time.perf_counter() - t0
        cands += row.pop("candidates")
        missed = row.pop("missed")
        rows.append(row)
        print(f"seed {seed:2d}: found {row['found']}/{row['bright']} point sources >= {MIN_COUNTS} counts, "
              f"{row['spurious']} of {row['excluded']} exclusions spurious, arc kept "
              f"{row['arc_kept']}/{row['arc_total']}, step 2 {row['seconds']:.1f} s", flush=True)
        for m in missed:
            print(f"         missed {m}")
    tot = {k: sum(r[k] for r in rows) for k in ("bright", "found", "excluded", "spurious", "arc_kept", "arc_total")}
    print(f"total ({args.preset} {' '.join(args.set)}, arc {args.arc_fraction:g} of the norm, {len(rows)} seeds): completeness "
          f"{tot['found']}/{tot['bright']} = {tot['found'] / max(tot['bright'], 1):.2f}; spurious "
          f"{tot['spurious']}/{tot['excluded']}; arc flux kept {tot['arc_kept'] / max(tot['arc_total'], 1):.3f} "
          f"(worst seed {min(r['arc_kept'] / max(r['arc_total'], 1) for r in rows):.3f})")
    for truth_kind in ("point source", "not a source"):
        sel = [c for c in cands if c["truth"] == truth_kind]
        ex = sum(c["excluded"] for c in sel)
        print(f"  candidates that are {truth_kind}: {len(sel)}, excluded {ex}; contrast quartiles "
              f"{np.percentile([c['contrast'] for c in sel], [25, 50, 75]).round(2).tolist() if sel else '-'}")
    if args.dump:
        Path(args.dump).write_text(json.dumps(cands, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
