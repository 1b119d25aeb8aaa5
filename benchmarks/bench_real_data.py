"""Issue 11: the whole native pipeline on the shared real observation (A907, MOS1+MOS2).

Times each step in-process (filtering, regions, spectra, the tbabs*zbremss fit with 90%
errors) and divides by the baseline measured in the same run: reading both event lists
once with astropy (every column). Target: events -> kT with errors < 20 s.

    python benchmarks/bench_real_data.py [path to xmm_a907_0201903501]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from astropy.io import fits  # noqa: E402

from benchmarks.common import ROOT  # noqa: E402

OBSID = "0201903501"


def main(folder: str) -> None:
    from xmmext.steps import FilterOptions, run_filtering
    from xmmext.steps import FitOptions, run_fit
    from xmmext.core.paths import ObsPaths
    from xmmext.steps import RegionOptions, run_regions
    from xmmext.steps import SpectraOptions, run_spectra
    src = Path(folder)
    lists = sorted((src / "event").glob("*.fits"))
    t0 = time.perf_counter()
    for f in lists:
        with fits.open(f, memmap=False) as h:
            _ = {c: h["EVENTS"].data[c] for c in h["EVENTS"].columns.names}
    base = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as wd:
        ev = Path(wd) / "data" / OBSID / "event"
        ev.mkdir(parents=True)
        for f in lists:
            (ev / f.name).symlink_to(f)
        paths = ObsPaths.of(OBSID, wd)
        cams = ["mos1", "mos2"]
        steps = [
            ("filtering", lambda: run_filtering(paths, FilterOptions(cameras=cams), force=True)),
            ("regions", lambda: run_regions(paths, RegionOptions(cameras=tuple(cams)), force=True)),
            ("spectra", lambda: run_spectra(paths, SpectraOptions(cameras=tuple(cams)), force=True)),
            ("fit", lambda: run_fit(paths.spectra, paths.fit, FitOptions(
                model="tbabs*zbremss", nh=0.054, redshift=0.153, cameras=tuple(cams)))),
        ]
        total = 0.0
        print(f"baseline: reading the {len(lists)} event lists once: {base:.2f} s")
        for name, fn in steps:
            t = time.perf_counter()
            res = fn()
            dt = time.perf_counter() - t
            total += dt
            print(f"{name:10s} {dt:6.2f} s  ({dt / base:6.1f} x baseline)")
        kt = res["parameters"]["zbremss.kT"]
        print(f"events -> kT {kt['value']:.2f} ({kt['lower']:.2f}-{kt['upper']:.2f}) with errors: "
              f"{total:.1f} s = {total / base:.0f} x baseline (target < 20 s)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "data" / "xmm_a907_0201903501"))
