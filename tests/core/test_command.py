"""The one command line: the ``xmmext`` console script with its subcommands, installed by
the set-up (``pip install -e .``), the OBSID taken the same way by every step."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, assert_one_line_error, run_cli
from xmmext.command import COMMANDS

VENV_BIN = Path(sys.executable).parent


def test_console_script_lists_every_subcommand(tmp_path):
    exe = VENV_BIN / "xmmext"
    assert exe.exists(), "the set-up installs the package (pip install -e .) with its console script"
    r = subprocess.run([str(exe), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in ("run", "filter", "regions", "spectra", "fit", "profile", "many", "simulate", "env"):
        assert f"  {name} " in r.stdout
    assert set(COMMANDS) == {"run", "filter", "regions", "spectra", "fit", "profile", "many", "simulate", "env"}


def test_package_imports_from_any_folder(tmp_path):
    """Not through PYTHONPATH: the installed package (a dask worker started elsewhere needs this)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", "import xmmext, xmmext.steps.registry; print(xmmext.__version__)"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from xmmext.core.version import __version__
    assert r.stdout.strip() == __version__


def test_one_version():
    """pyproject takes the version from the package (no second copy to drift)."""
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and "xmmext.core.version.__version__" in text
    assert "\nversion =" not in text.split("[project]")[1].split("[")[0]


def test_unknown_command_is_exit_2():
    r = run_cli(["python", "-m", "xmmext", "fitt"])
    assert r.returncode == 2 and "unknown command" in r.stderr


@pytest.mark.parametrize("argv", [["spectra", "0999990101"], ["spectra", "--obsid", "0999990101"]])
def test_obsid_positional_or_with_option(tmp_path, argv):
    """Both spellings reach the step (which then says what is missing: step 1)."""
    r = run_cli(["python", "-m", "xmmext", *argv, "--workdir", str(tmp_path)])
    assert_one_line_error(r, 2, "run step 1")


def test_two_different_obsids_are_refused(tmp_path):
    r = run_cli(["python", "-m", "xmmext", "regions", "0999990101", "--obsid", "0999990102", "--workdir", str(tmp_path)])
    assert_one_line_error(r, 2, "two different OBSIDs")


def test_fit_takes_an_obsid(tmp_path):
    """``xmmext fit <OBSID>`` fits that observation's spectra, as a full run does."""
    r = run_cli(["python", "-m", "xmmext", "fit", "0999990101", "--workdir", str(tmp_path)])
    assert r.returncode == 2 and str(tmp_path / "results" / "0999990101" / "spectra") in r.stderr, r.stderr
    r = run_cli(["python", "-m", "xmmext", "fit", "0999990101", "--input", str(tmp_path), "--workdir", str(tmp_path)])
    assert_one_line_error(r, 2, "not both")


def test_many_takes_the_name_as_the_pipeline_does(tmp_path):
    """``xmmext many --list L <name>`` like ``xmmext run --list L <name>`` (``--name`` kept)."""
    lst = tmp_path / "obs.txt"
    lst.write_text("0999990101\n")
    r = run_cli(["python", "-m", "xmmext", "many", "--list", str(lst), "a", "--name", "b", "--workdir", str(tmp_path)])
    assert_one_line_error(r, 2, "two different names")
    r = run_cli(["python", "-m", "xmmext", "many", "--list", str(lst), "sample", "--workdir", str(tmp_path)])
    assert_one_line_error(r, 2, "no observation of the list has a fit")
    assert str(tmp_path / "results" / "multi" / "sample") in r.stderr       # the positional name was taken


def test_a_long_step_shows_its_elapsed_time():
    """Issue 26: work with no count of its own (a step over 10 s) gets a live line."""
    import io
    import time
    from xmmext.core.runner import progress_while
    out = io.StringIO()
    with progress_while("fit", delay=0.0, file=out, disable=False):
        time.sleep(1.3)
    assert "fit: running for 00:01" in out.getvalue()
    quiet = io.StringIO()
    with progress_while("fit", delay=10.0, file=quiet, disable=False):
        time.sleep(0.2)                      # shorter than the delay: nothing shown
    assert "running" not in quiet.getvalue()
