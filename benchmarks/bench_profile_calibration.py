"""Issue 15: are the temperature profile's intervals calibrated, and do its misses come
from the photons or from the background?

Both checks refit a cool-core profile (the preset of bench_profile.py, cross-talk model,
tbabs*zbremss) with no background at all, so that only the cluster's own counts are left:

* ``--check model``: Poisson realisations of each annulus's noise-free spectra
  (:func:`xmmext.simulate.truth.expected_annulus_counts`: the truth's shells mixed by the PSF and
  folded through the annulus's ARF and RMF), regrouped as step 3 groups. The model is exact
  here, so the share of 90% intervals holding the truth measures the fit and its
  intervals alone (expected 90%).
* ``--check photons``: each seed's annuli rebuilt from the simulated cluster's own events
  (truth labels of the events step 1 kept, :func:`xmmext.simulate.truth.step1_selected`): the
  simulator's photons against the model, with no background to blame.

Prints the share of intervals holding the emission-weighted truth and z = (fit - truth) /
sigma (sigma = half the 90% interval / 1.645): mean ~0 and spread ~1 when calibrated.

    python benchmarks/bench_profile_calibration.py [--check model|photons|both] [--seeds 3]
                                                  [--first-seed 1] [--realisations 20] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmmext import instrument as ins  # noqa: E402
from xmmext.core.paths import ObsPaths  # noqa: E402
from xmmext.simulate.truth import emission_weighted_kt  # noqa: E402

MODEL = "tbabs*zbremss"
LEVEL_Z = 1.645          # 90% two-sided


def simulate_profile(seed: int, wd: Path, exposure: float, max_annuli: int) -> tuple[ObsPaths, dict, list]:
    """Simulate the cool-core preset and run steps 1, 2 and the profile (local background)."""
    from xmmext.simulate.observation import preset_config, simulate
    from xmmext.steps import FilterOptions, RegionOptions, run_filtering, run_regions
    from xmmext.steps.base import execute
    from xmmext.steps.profile import ProfileOptions, ProfileStep
    obsid = f"09999905{seed:02d}"
    truth = simulate(preset_config("cool-core", obsid=obsid, seed=seed, exposure=exposure), wd)
    paths = ObsPaths.of(obsid, wd)
    run_filtering(paths, FilterOptions())
    run_regions(paths, RegionOptions())
    opts = ProfileOptions(nh=truth["cluster"]["nH"], redshift=truth["cluster"]["redshift"], max_annuli=max_annuli,
                          profile_model=MODEL)
    rows = execute(ProfileStep().plan(paths, opts)).summary["annuli"]
    return paths, truth, rows


def write_counts(src: Path, dst: Path, cam: str, counts: np.ndarray) -> None:
    """The annulus's spectrum with other counts and no background, grouped as step 3 does
    by default (25 counts, 1/3 of the resolution), with its ARF and RMF beside it."""
    from astropy.io import fits
    from xmmext.spectra.grouping import DEFAULT_GROUP, group_spectrum, parse_group
    grouping, quality = group_spectrum(counts, ins.camera(cam), parse_group(DEFAULT_GROUP))
    dst.mkdir(parents=True, exist_ok=True)
    with fits.open(src / f"{cam}_src_grp.pha") as h:
        data = h["SPECTRUM"].data
        data["COUNTS"] = counts.astype(data["COUNTS"].dtype)
        data["GROUPING"], data["QUALITY"] = grouping, quality
        h["SPECTRUM"].header["BACKFILE"] = "none"
        h.writeto(dst / f"{cam}_src_grp.pha", overwrite=True)
    for name in (f"{cam}.arf", f"{cam}.rmf"):
        if not (dst / name).exists():
            shutil.copy(src / name, dst / name)


def fit_profile(folder: Path, paths: ObsPaths, truth: dict, rows: list) -> list[tuple]:
    """Cross-talk fit of the annuli in ``folder``: [(fit, lower, upper, truth)] per annulus."""
    from xmmext.core.fileio import read_record
    from xmmext.fitting import crosstalk as X
    from xmmext.fitting.inputs import find_spectra, model_for_fit
    from xmmext.steps.profile import ProfileOptions
    spectra = [find_spectra(folder / r["folder"], tuple(r["cameras"])) for r in rows]
    edges = [r["r_in_arcmin"] for r in rows] + [rows[-1]["r_out_arcmin"]]
    fopts = ProfileOptions(nh=truth["cluster"]["nH"], redshift=truth["cluster"]["redshift"], max_annuli=len(rows),
                           profile_model=MODEL).fit_options(folder)
    sb = read_record(paths.regions / "regions.json")["surface_brightness"]
    start = [dict(r, kT=r.get("kT_independent", r["kT"])) for r in rows]
    res = X.fit_crosstalk(spectra, X.crosstalk_coefficients(spectra, edges, sb, fopts), model_for_fit(MODEL),
                          fopts, start)
    out = []
    for r, pars in zip(rows, res["annuli"]):
        kt = pars["zbremss.kT"]
        out.append((kt["value"], kt["lower"], kt["upper"],
                    emission_weighted_kt(truth, r["r_in_arcmin"], r["r_out_arcmin"])))
    return out


def expected_spectra(paths: ObsPaths, truth: dict, rows: list) -> dict:
    """{(annulus index, camera): noise-free cluster counts per channel}."""
    from astropy.io import fits
    from xmmext.spectra.ogip import read_arf, read_rmf
    from xmmext.simulate.truth import expected_annulus_counts
    folder = paths.results / "profile"
    out = {}
    for k, r in enumerate(rows):
        src = folder / r["folder"]
        for cam in r["cameras"]:
            arf = src / f"{cam}.arf"
            psfcorr = fits.getheader(arf, "SPECRESP").get("PSFCORR", 1.0)
            exposure = fits.getheader(src / f"{cam}_src_grp.pha", "SPECTRUM")["EXPOSURE"]
            out[(k, cam)] = expected_annulus_counts(truth, r["r_in_arcmin"], r["r_out_arcmin"], cam, read_arf(arf),
                                                    read_rmf(src / f"{cam}.rmf"), exposure, psfcorr)
    return out


def model_realisation(job: tuple) -> list[tuple]:
    """One Poisson realisation of the expected spectra, fitted (run in a worker)."""
    wd, obsid, index, expected_file = job
    paths = ObsPaths.of(obsid, wd)
    truth = json.loads(paths.truth.read_text())
    rows = json.loads((paths.results / "profile" / "profile.json").read_text())["annuli"]
    expected = np.load(expected_file)
    rng = np.random.default_rng(1000 + index)
    folder = Path(wd) / f"realisation_{index:03d}"
    for k, r in enumerate(rows):
        for cam in r["cameras"]:
            counts = rng.poisson(np.clip(expected[f"{k}_{cam}"], 0.0, None))
            write_counts(paths.results / "profile" / r["folder"], folder / r["folder"], cam, counts)
    result = fit_profile(folder, paths, truth, rows)
    shutil.rmtree(folder, ignore_errors=True)
    return result


def photons_profile(paths: ObsPaths, truth: dict, rows: list) -> list[tuple]:
    """The annuli rebuilt from the cluster's own cleaned events, fitted."""
    from xmmext.sky.extraction_region import read_ds9
    from xmmext.simulate.truth import step1_selected
    folder = paths.workdir / f"cluster_only_{paths.obsid}"
    events = {}
    for cam in {c for r in rows for c in r["cameras"]}:
        ev, keep = step1_selected(paths, cam, ("cluster",))
        events[cam] = {k: ev.columns[k][keep] for k in ("X", "Y", "PI")}
    for r in rows:
        src = paths.results / "profile" / r["folder"]
        region = read_ds9(src / "src.reg")
        for cam in r["cameras"]:
            ev = events[cam]
            inside = region.contains(ev["X"], ev["Y"])
            write_counts(src, folder / r["folder"], cam, ins.pi_spectrum(ev["PI"][inside], ins.camera(cam)))
    return fit_profile(folder, paths, truth, rows)


def summarise(label: str, fits_: list[tuple]) -> None:
    a = np.array([f for f in fits_ if None not in f], float)
    value, lower, upper, true = a.T
    inside = (lower <= true) & (true <= upper)
    z = (value - true) / ((upper - lower) / 2 / LEVEL_Z)
    print(f"{label}: {inside.sum()}/{len(a)} = {inside.mean():.0%} of 90% intervals hold the truth; "
          f"z mean {z.mean():+.2f} spread {z.std():.2f}; fitted/true {np.mean(value / true):.3f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", choices=["model", "photons", "both"], default="both")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--realisations", type=int, default=20, help="Poisson realisations (--check model)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--exposure", type=float, default=20000.0)
    ap.add_argument("--max-annuli", type=int, default=12)
    args = ap.parse_args()
    wd = Path(tempfile.mkdtemp())
    t0 = time.monotonic()
    photons, first = [], None
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        paths, truth, rows = simulate_profile(seed, wd, args.exposure, args.max_annuli)
        first = first or (paths, truth, rows)
        if args.check in ("photons", "both"):
            fitted = photons_profile(paths, truth, rows)
            summarise(f"seed {seed} cluster photons only", fitted)
            photons += fitted
        if args.check == "model":
            break
    if photons:
        summarise(f"cluster photons only, {len(photons)} annuli", photons)
    if args.check in ("model", "both"):
        paths, truth, rows = first
        expected = expected_spectra(paths, truth, rows)
        expected_file = wd / "expected.npz"
        np.savez(expected_file, **{f"{k}_{cam}": v for (k, cam), v in expected.items()})
        jobs = [(wd, paths.obsid, i, expected_file) for i in range(args.realisations)]
        with ProcessPoolExecutor(args.workers) as pool:
            model = [f for result in pool.map(model_realisation, jobs) for f in result]
        summarise(f"Poisson realisations of the model (seed {args.first_seed}, {args.realisations} x "
                  f"{len(rows)} annuli)", model)
    print(f"{time.monotonic() - t0:.0f} s")
    shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
