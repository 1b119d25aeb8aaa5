"""Issue 7: 4 simulated observations through all steps with 1 worker and with 2 workers
(target: 2 workers <= 0.65 x the time of 1 worker; ratio printed)."""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import simulate_into  # noqa: E402
from xmmext.pipeline.many import run_many  # noqa: E402
from xmmext.steps import FitOptions, RunSettings  # noqa: E402
from xmmext.steps.run import default_options  # noqa: E402


def main():
    base = Path(tempfile.mkdtemp())
    obs = [("0999996001", 1, 0.1), ("0999996002", 2, 0.2), ("0999996003", 3, 0.15), ("0999996004", 4, 0.25)]
    for obsid, seed, frac in obs:
        simulate_into(base, obsid=obsid, seed=seed, exposure=15000.0, flare_fraction=frac)
    opts = RunSettings(default_options(fit=FitOptions(model="tbabs*zbremss", nh=0.03, redshift=0.05)), name="bench")
    times = {}
    for workers in (1, 2):
        wd = Path(tempfile.mkdtemp())
        shutil.copytree(base / "data", wd / "data")
        t0 = time.perf_counter()
        res = run_many([o for o, _, _ in obs], wd, opts, workers=workers)
        times[workers] = time.perf_counter() - t0
        print(f"{workers} worker(s): {times[workers]:.1f} s, {sum(r['status'] == 'ok' for r in res)}/4 ok")
    print(f"ratio 2 workers / 1 worker = {times[2] / times[1]:.2f} (target <= 0.65)")


if __name__ == "__main__":
    main()
