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
    from xmmext.simulate.observation import SimConfig, simulate
    cfg = SimConfig(**kw)
    return simulate(cfg, workdir)


def _built_once(tmp_path_factory, name: str, build):
    """Build a session fixture's data once for all pytest-xdist workers (under a file
    lock in their shared temporary folder); every worker then reads the same files."""
    import fcntl
    import json
    import os
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    wd = root / f"shared_{name}"
    with open(root / f"shared_{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = wd / "fixture.json"
        if not done.exists():
            if wd.exists():
                import shutil
                shutil.rmtree(wd)                  # a half-built fixture of a killed run
            wd.mkdir(parents=True)
            done_value = build(wd)
            done.write_text(json.dumps(done_value))
        return wd, json.loads(done.read_text())


@pytest.fixture(scope="session")
def demo_obs(tmp_path_factory):
    """The default simulated observation (30 ks, seed 42, all cameras)."""
    return _built_once(tmp_path_factory, "demo", lambda wd: simulate_into(wd))


@pytest.fixture(scope="session")
def short_obs(tmp_path_factory):
    """A shorter observation (10 ks) for steps that are tested many times."""
    return _built_once(tmp_path_factory, "short",
                       lambda wd: simulate_into(wd, obsid="0999990201", seed=7, exposure=10000.0))


@pytest.fixture(scope="session")
def processed_obs(tmp_path_factory):
    """A default simulated observation taken through filtering, regions and spectra."""
    import json
    from xmmext.core.paths import ObsPaths
    obsid = "0999994001"

    def build(wd):
        from xmmext.steps import FilterOptions, RegionOptions, run_filtering, run_regions
        truth = simulate_into(wd, obsid=obsid, seed=42)
        paths = ObsPaths.of(obsid, wd)
        run_filtering(paths, FilterOptions())
        run_regions(paths, RegionOptions())
        r = run_cli(["python", str(ROOT / "spectral_analysis.py"), "--obsid", obsid, "--workdir", str(wd)])
        assert r.returncode == 0, r.stderr
        return truth
    wd, truth = _built_once(tmp_path_factory, "processed", build)
    paths = ObsPaths.of(obsid, wd)
    return wd, truth, paths, json.loads((paths.spectra / "spectra.json").read_text())


@pytest.fixture
def fakebin(tmp_path, monkeypatch):
    """A folder on PATH for stand-in SAS tasks (tests/sas_fakes.py writes them)."""
    b = tmp_path / "bin"
    b.mkdir()
    monkeypatch.setenv("PATH", f"{b}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PFILES", "/user/pf;/sys/pf")
    return b


