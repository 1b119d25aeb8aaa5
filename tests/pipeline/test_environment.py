"""set_env.sh and backend detection (SAS faked with a stand-in sasversion)."""
from __future__ import annotations

import os
import stat

from conftest import ROOT, run_cli


def _fake_sas(tmp_path, version="xmmsas_20230412_1735-21.0.0"):
    bindir = tmp_path / "sasbin"
    bindir.mkdir()
    exe = bindir / "sasversion"
    exe.write_text(f"#!/bin/sh\necho 'sasversion:- Executing (routine): sasversion'\necho '{version}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bindir


def test_set_env_runs_and_reports_native(tmp_path):
    r = run_cli(["bash", str(ROOT / "set_env.sh")])
    assert r.returncode == 0, r.stderr
    assert "native    ok" in r.stderr
    assert "sas       missing" in r.stderr and "SAS_DIR not set" in r.stderr


def test_set_env_is_sourceable_and_exports(tmp_path):
    r = run_cli(["bash", "-c", f"source {ROOT / 'set_env.sh'} 2>/dev/null; echo rc=$? $XMMEXT_BACKEND $XMMEXT_ENGINE"])
    assert "rc=0 native sherpa" in r.stdout


def test_sas_detected_with_ccf(tmp_path):
    bindir = _fake_sas(tmp_path)
    ccf = tmp_path / "ccf"
    ccf.mkdir()
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "SAS_DIR": str(tmp_path),
           "SAS_CCFPATH": str(ccf)}
    r = run_cli(["python", "-m", "xmmext.pipeline.environment", "--shell"], env_extra=env)
    assert r.returncode == 0
    assert "sas       ok       xmmsas_20230412_1735-21.0.0" in r.stderr
    assert "export XMMEXT_BACKEND=sas" in r.stdout


def test_sas_without_ccf_says_why(tmp_path):
    bindir = _fake_sas(tmp_path)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "SAS_DIR": str(tmp_path),
           "SAS_CCFPATH": str(tmp_path / "nope")}
    r = run_cli(["python", "-m", "xmmext.pipeline.environment", "--shell"], env_extra=env)
    assert "does not exist" in r.stderr
    assert "export XMMEXT_BACKEND=native" in r.stdout


def test_atomdb_status_command():
    r = run_cli(["python", "-m", "xmmext.xspec.atomdb", "--status"])
    assert r.returncode == 0
    assert "AtomDB" in r.stdout and ("found:" in r.stdout)
