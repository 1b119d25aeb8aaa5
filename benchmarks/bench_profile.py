"""Issue 15: does the temperature profile recover a cool-core cluster's input profile?

Seeds 1-3 of the cool-core preset (kT 3 keV at the centre rising to 6 keV, cool radius
1.5', 20 ks, three cameras) go through filtering, regions and the profile step
(S/N 40 per annulus, tbabs*zbremss without AtomDB, ``--background local`` or ``model``;
with local, the PSF cross-talk between annuli is modelled unless ``--no-crosstalk``); each
annulus's 90% interval is compared with the emission-weighted kT of the simulated shells in
it. Target: >= 80% of annuli. Also prints the mean fitted/true kT inside and outside 3',
and the same for the independent fits the cross-talk fit starts from.

    python benchmarks/bench_profile.py [--seeds 3] [--first-seed 1] [--exposure 20000] [--max-annuli 12]
                                       [--background model] [--no-crosstalk]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmmext.core.paths import ObsPaths  # noqa: E402
from xmmext.simulate.truth import emission_weighted_kt  # noqa: E402
from xmmext.simulate.observation import preset_config, simulate  # noqa: E402
from xmmext.steps import FilterOptions, RegionOptions, run_filtering, run_regions  # noqa: E402
from xmmext.steps.base import execute  # noqa: E402
from xmmext.steps.profile import ProfileOptions, ProfileStep  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--no-crosstalk", action="store_true", help="independent fits only")
    ap.add_argument("--exposure", type=float, default=20000.0)
    ap.add_argument("--max-annuli", type=int, default=12)
    ap.add_argument("--background", default="local", choices=["local", "model"])
    args = ap.parse_args()
    wd = Path(tempfile.mkdtemp())
    rows, t0 = [], time.monotonic()
    independent = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        obsid = f"09999905{seed:02d}"
        truth = simulate(preset_config("cool-core", obsid=obsid, seed=seed, exposure=args.exposure), wd)
        paths = ObsPaths.of(obsid, wd)
        run_filtering(paths, FilterOptions())
        run_regions(paths, RegionOptions())
        opts = ProfileOptions(nh=truth["cluster"]["nH"], redshift=truth["cluster"]["redshift"], max_annuli=args.max_annuli, background=args.background,
                              no_crosstalk=args.no_crosstalk)
        prof = execute(ProfileStep().plan(paths, opts)).summary
        for a in prof["annuli"]:
            kt = a["kT"]
            true = emission_weighted_kt(truth, a["r_in_arcmin"], a["r_out_arcmin"])
            inside = kt["lower"] is not None and kt["lower"] <= true <= kt["upper"]
            rows.append((seed, a["r_in_arcmin"], a["r_out_arcmin"], kt["value"], kt["lower"], kt["upper"], true, inside))
            ind = a.get("kT_independent")
            if ind:
                independent.append((ind["value"] / true, ind["lower"] <= true <= ind["upper"], a["r_out_arcmin"]))
            print(f"seed {seed}  {a['r_in_arcmin']:5.2f}-{a['r_out_arcmin']:5.2f}'  kT {kt['value']:.2f} "
                  f"({kt['lower']:.2f}-{kt['upper']:.2f})  true {true:.2f}  {'inside' if inside else 'OUTSIDE'}",
                  flush=True)
    n_in = sum(r[-1] for r in rows)
    inner = [r[3] / r[6] for r in rows if r[2] <= 3.0]
    outer = [r[3] / r[6] for r in rows if r[2] > 3.0]
    print(f"annuli whose 90% interval holds the truth: {n_in}/{len(rows)} = {n_in / len(rows):.0%} (target >= 80%)")
    print(f"mean fitted/true kT: inside 3' {sum(inner) / max(len(inner), 1):.3f} ({len(inner)} annuli), "
          f"outside {sum(outer) / max(len(outer), 1):.3f} ({len(outer)} annuli); {time.monotonic() - t0:.0f} s")
    if independent:
        n_ind = sum(r[1] for r in independent)
        inner = [r[0] for r in independent if r[2] <= 3.0]
        outer = [r[0] for r in independent if r[2] > 3.0]
        print(f"the same annuli fitted independently (no cross-talk model): {n_ind}/{len(independent)} = "
              f"{n_ind / len(independent):.0%}; mean fitted/true inside 3' {sum(inner) / max(len(inner), 1):.3f}, "
              f"outside {sum(outer) / max(len(outer), 1):.3f}")


if __name__ == "__main__":
    main()
