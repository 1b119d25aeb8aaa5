"""Issue 15: local versus modelled background on the more honest simulator.

For seeds 1-5 (the default cluster: kT 5 keV, beta model, 30 ks, three cameras, flatter
soft-proton vignetting, instrumental lines varying across the detector, pn out-of-time
events) and source radii 2', 4' and automatic, the spectra are fitted with
``--background local`` and ``--background model`` (tbabs*zbremss, nH frozen at the truth).
Compared with the truth: kT, and the norm of the cluster's emission in the source region
(the beta model's share of the true norm: what a fit without self-subtraction should give).
Prints the table of the README: mean fitted/true and 90% coverage per radius and method.

    python benchmarks/bench_background.py [--seeds 5] [--exposure 30000] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RADII = ("2", "4", "auto")
METHODS = ("local", "model")


def one_seed(args) -> list[dict]:
    """Simulate one seed and fit every radius with both backgrounds."""
    seed, exposure, wd = args
    from xmmext.core.paths import ObsPaths
    from xmmext.sky.extraction_region import read_ds9
    from xmmext.simulate.truth import cluster_flux_fraction
    from xmmext.simulate.observation import SimConfig, simulate
    from xmmext.steps import FilterOptions, FitOptions, RegionOptions, SpectraOptions, run_filtering, \
        run_regions, run_spectra
    from xmmext.steps.base import execute
    from xmmext.steps.fit import FitStep
    obsid = f"09999960{seed:02d}"
    truth = simulate(SimConfig(obsid=obsid, seed=seed, exposure=exposure), wd)
    paths = ObsPaths.of(obsid, wd)
    run_filtering(paths, FilterOptions())
    rows = []
    for radius in RADII:
        run_regions(paths, RegionOptions(radius=None if radius == "auto" else float(radius)), force=True)
        run_spectra(paths, SpectraOptions(), force=True)
        src = read_ds9(paths.regions / "src.reg")
        true_norm = truth["cluster"]["norm"] * cluster_flux_fraction(truth, src)
        r_arcmin = json.loads((paths.regions / "regions.json").read_text())["radius_arcmin"]
        for method in METHODS:
            out = Path(wd) / f"fit_{obsid}_{radius}_{method}"
            opts = FitOptions(input=str(paths.spectra), output=str(out), model="tbabs*zbremss",
                              nh=truth["cluster"]["nH"], redshift=truth["cluster"]["redshift"], background=method)
            t0 = time.perf_counter()
            res = execute(FitStep().plan(None, opts), force=True).summary
            kt, nm = res["parameters"]["zbremss.kT"], res["parameters"]["zbremss.norm"]
            rows.append({"seed": seed, "radius": radius, "r_arcmin": r_arcmin, "method": method,
                         "kT": kt, "norm": nm, "true_kT": truth["cluster"]["kT"], "true_norm": true_norm,
                         "seconds": time.perf_counter() - t0})
            print(f"seed {seed} R {radius:>4} ({r_arcmin:.2f}') {method:<5} kT {kt['value']:.3f} "
                  f"({kt['lower']:.3f}-{kt['upper']:.3f}) norm/true {nm['value'] / true_norm:.4f} "
                  f"({nm['lower'] / true_norm:.4f}-{nm['upper'] / true_norm:.4f})", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| R | background | norm/true (mean) | kT/true (mean) | norm 90% coverage | kT 90% coverage |",
             "|---|---|---|---|---|---|"]
    for radius in RADII:
        for method in METHODS:
            sel = [r for r in rows if r["radius"] == radius and r["method"] == method]
            if not sel:
                continue
            n = len(sel)
            nr = sum(r["norm"]["value"] / r["true_norm"] for r in sel) / n
            kr = sum(r["kT"]["value"] / r["true_kT"] for r in sel) / n
            cn = sum(r["norm"]["lower"] <= r["true_norm"] <= r["norm"]["upper"] for r in sel)
            ck = sum(r["kT"]["lower"] <= r["true_kT"] <= r["kT"]["upper"] for r in sel)
            label = f"{radius}'" if radius != "auto" else f"auto ({min(r['r_arcmin'] for r in sel):.1f}-" \
                                                          f"{max(r['r_arcmin'] for r in sel):.1f}')"
            lines.append(f"| {label} | {method} | {nr:.3f} | {kr:.3f} | {cn}/{n} | {ck}/{n} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--exposure", type=float, default=30000.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    wd = tempfile.mkdtemp()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [r for part in pool.map(one_seed, [(s, args.exposure, wd) for s in range(1, args.seeds + 1)])
                for r in part]
    print(table(rows))
    fits = {m: sum(r["seconds"] for r in rows if r["method"] == m) / max(1, sum(r["method"] == m for r in rows))
            for m in METHODS}
    print(f"{len(rows)} fits in {time.perf_counter() - t0:.0f} s; mean fit time: local {fits['local']:.1f} s, "
          f"model {fits['model']:.1f} s")
    (Path(wd) / "rows.json").write_text(json.dumps(rows))
    print(f"rows: {wd}/rows.json")


if __name__ == "__main__":
    main()
