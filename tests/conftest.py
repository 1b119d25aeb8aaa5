"""Shared fixtures: simulated observations (made once per session) and CLI helpers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "xmm_epic_ngc7793_ulx4"
DEMO_OBSID = "0999990101"


def needs_shared():
    return pytest.mark.skipif(not SHARED_DATA.is_dir(),
                              reason=f"real XMM data not available ({SHARED_DATA})")


def run_cli(args: list[str], cwd=None, env_extra: dict | None = None, timeout: float = 600):
    """Run a command with the project on PYTHONPATH; return CompletedProcess (text)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLBACKEND"] = "Agg"
    env.update(env_extra or {})
    if args and args[0] == "python":
        args = [sys.executable] + args[1:]
    return subprocess.run(args, cwd=cwd or ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(r, code: int, needle: str) -> None:
    """The command failed with ``code`` and exactly one 'error:' line containing ``needle``."""
    assert r.returncode == code, (r.returncode, r.stderr)
    errs = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errs) == 1 and needle in errs[0], r.stderr
    assert "Traceback" not in r.stderr


def simulate_into(workdir: Path, **kw):
    from xmmext.simulate import SimConfig, simulate
    cfg = SimConfig(**kw)
    return simulate(cfg, workdir)


@pytest.fixture(scope="session")
def demo_obs(tmp_path_factory):
    """The default simulated observation (30 ks, seed 42, all cameras)."""
    wd = tmp_path_factory.mktemp("demo")
    truth = simulate_into(wd)
    return wd, truth


@pytest.fixture(scope="session")
def short_obs(tmp_path_factory):
    """A shorter observation (10 ks) for steps that are tested many times."""
    wd = tmp_path_factory.mktemp("short")
    truth = simulate_into(wd, obsid="0999990201", seed=7, exposure=10000.0)
    return wd, truth


@pytest.fixture(scope="session")
def processed_obs(tmp_path_factory):
    """A default simulated observation taken through filtering, regions and spectra."""
    from xmmext.steps import FilterOptions, run_filtering
    from xmmext.layout import ObsPaths
    from xmmext.steps import RegionOptions, run_regions
    wd = tmp_path_factory.mktemp("processed")
    obsid = "0999994001"
    truth = simulate_into(wd, obsid=obsid, seed=42)
    paths = ObsPaths.of(obsid, wd)
    run_filtering(paths, FilterOptions())
    run_regions(paths, RegionOptions())
    r = run_cli(["python", str(ROOT / "spectral_analysis.py"), "--obsid", obsid, "--workdir", str(wd)])
    assert r.returncode == 0, r.stderr
    import json
    return wd, truth, paths, json.loads((paths.spectra / "spectra.json").read_text())
