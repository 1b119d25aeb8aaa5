"""Issue 27: every numeric option bounded - values that used to hang, crash (exit 1) or
"succeed" with nothing sensible are refused at once with exit 2 and one line."""
from __future__ import annotations

import time

import pytest

from conftest import ROOT, assert_one_line_error, run_cli

SIM = ["python", "-m", "xmmext", "simulate", "--obsid", "0999997801"]


@pytest.mark.parametrize("args, needle", [
    (["--n-point-sources", "1000000000"], "more than 1000 point sources"),
    (["--nh", "1e6"], "nH above"),
    (["--cluster-rate", "1e9"], "cluster rate above"),
    (["--date-obs", "yesterday"], "--date-obs must be an ISO date"),
    (["--date-obs", "1970-01-01T00:00:00"], "not within XMM-Newton's life"),
    (["--flare-scale", "1e12"], "flare scale above"),
    (["--kt", "1e6"], "kT above 100 keV"),
    (["--exposure", "1e-9"], "exposure below 100 s"),
])
def test_simulator_options_are_bounded(tmp_path, args, needle):
    t0 = time.monotonic()
    r = run_cli(SIM + args + ["--workdir", str(tmp_path)])
    assert_one_line_error(r, 2, needle)
    assert time.monotonic() - t0 < 60 and not (tmp_path / "data").exists()


def test_goodness_and_binsize_are_bounded(tmp_path):
    r = run_cli(["python", str(ROOT / "xspec_analysis.py"), "--input", str(tmp_path), "--goodness", "100000000"])
    assert_one_line_error(r, 2, "--goodness takes a number of simulations from 0 to 10000")
    r = run_cli(["bash", str(ROOT / "run_filtering.sh"), "0999997801", "--workdir", str(tmp_path), "--binsize", "1e-9"])
    assert_one_line_error(r, 2, "--binsize must be 1-10000 s")
