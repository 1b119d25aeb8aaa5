"""Issue 2: simulating ~1e6 events (target: under 30 s on this machine).

Baseline measured in the same run: drawing the same number of uniform random values
for the 11 event columns and writing them as a FITS table (the I/O + RNG floor).
Prints the simulator's time, the baseline's, and their ratio.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from xmmext.simulate.observation import SimConfig, simulate


def main():
    wd = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    truth = simulate(SimConfig(obsid="0999999901", seed=1, exposure=40000.0), wd)
    t_sim = time.perf_counter() - t0
    n = sum(sum(c.values()) for c in truth["counts"].values())
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    cols = [fits.Column(f"C{i}", "D", array=rng.uniform(size=n)) for i in range(11)]
    fits.BinTableHDU.from_columns(cols).writeto(wd / "floor.fits")
    t_floor = time.perf_counter() - t0
    print(f"simulate: {n:.3g} events in {t_sim:.2f} s ({n / t_sim / 1e6:.2f} M events/s); target < 30 s per 1e6")
    print(f"baseline (RNG + FITS write of the same rows): {t_floor:.2f} s; ratio simulate/baseline = {t_sim / t_floor:.1f}")
    print(f"time per 1e6 events: {t_sim / n * 1e6:.2f} s -> {'OK' if t_sim / n * 1e6 < 30 else 'TOO SLOW'}")


if __name__ == "__main__":
    main()
