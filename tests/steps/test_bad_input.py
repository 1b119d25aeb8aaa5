"""Issue 14: hostile input, table-driven. Every case asserts the exit code, exactly one
``error:`` line with what went wrong, no traceback, inputs unchanged and no left-over
temporary files. Cheap cases run in-process through each program's ``main`` (as the
scripts call it); cases that need the shell, a crash or a resource limit run as
subprocesses."""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

from conftest import ROOT, run_cli, simulate_into
from xmmext.core.cli import run_main
from xmmext.core.paths import ObsPaths

OBSID = "0999998001"
MODEL = "tbabs*zbremss"


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    """A short simulated observation through steps 1-3 (pn), plus bad files to feed in."""
    from xmmext.steps import FilterOptions, RegionOptions, SpectraOptions, run_filtering, run_regions, run_spectra
    wd = tmp_path_factory.mktemp("bad")
    simulate_into(wd, obsid=OBSID, seed=3, exposure=6000.0, cameras=("pn",))
    paths = ObsPaths.of(OBSID, wd)
    run_filtering(paths, FilterOptions(cameras=("pn",)))
    run_regions(paths, RegionOptions(cameras=("pn",)))
    run_spectra(paths, SpectraOptions(cameras=("pn",)))
    bad = wd / "bad"
    bad.mkdir()
    rng = np.random.default_rng(0)
    (bad / "random.bin").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (bad / "nan.reg").write_text("# Region file format: DS9 version 4.1\nphysical\ncircle(nan,25921,1200)\n")
    (bad / "inf_radius.reg").write_text("physical\ncircle(25921,25921,inf)\n")
    (bad / "polygon.reg").write_text("physical\npolygon(1,1,2,2,3,1)\n")
    (bad / "empty.reg").write_text("# nothing\n")
    (bad / "far.reg").write_text("fk5\ncircle(10.0,-60.0,60\")\n")
    (bad / "list_bad_line.txt").write_text("0999998001\nnot-an-obsid\n")
    (bad / "list_empty.txt").write_text("# only a comment\n")
    (bad / "list_repeat.txt").write_text("0999998001\n0999998001\n")
    (bad / "two.txt").write_text("0999998001\n0999998002\n")
    (bad / "notfits.pha").write_text("SIMPLE = nonsense\n")
    nested = "(" * 3000 + "powerlaw" + ")" * 3000
    (bad / "nested.txt").write_text(nested)
    return wd, paths


def _snapshot(wd):
    """Content hash of every file under data/ and bad/ (inputs: never modified)."""
    out = {}
    for sub in ("data", "bad"):
        for p in sorted((wd / sub).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _leftovers(wd):
    return sorted(str(p) for p in wd.rglob("*.part"))


def _mains():
    import xmmext.pipeline.many as multi, xmmext.pipeline.run as pipeline, xmmext.simulate.observation as simulate
    from xmmext.steps import filtering, fit, profile, regions, spectra
    return {"filtering": filtering.main, "regions": regions.main, "spectra": spectra.main, "fit": fit.main,
            "profile": profile.main,
            "pipeline": pipeline.main, "multi": multi.main, "simulate": simulate.main}


# (program, arguments, exit code, text the one error line contains); {wd} {obsid} {bad} {spectra}
CASES = [
    # --- OBSIDs and names ---------------------------------------------------------------------
    ("filtering", ["0999990101\n"], 2, "OBSID must be exactly 10 digits"),
    ("filtering", ["12345"], 2, "OBSID must be exactly 10 digits"),
    ("filtering", ["../../etc/x"], 2, "OBSID must be exactly 10 digits"),
    ("filtering", ["099999800１"], 2, "OBSID must be exactly 10 digits"),
    ("regions", ["0999998001 "], 2, "OBSID must be exactly 10 digits"),
    ("spectra", ["--obsid", "abcdefghij"], 2, "OBSID must be exactly 10 digits"),
    ("pipeline", ["{obsid}", "evil\n"], 2, "name must match"),
    ("pipeline", ["{obsid}", "a/b"], 2, "name must match"),
    ("pipeline", ["{obsid}", ".."], 2, "name must match"),
    ("pipeline", ["{obsid}", "x" * 65], 2, "name must match"),
    ("pipeline", ["{obsid}"], 2, "give <OBSID> <name>"),
    ("pipeline", ["--list", "{bad}/two.txt"], 2, "--list needs a name"),
    ("multi", ["--list", "{bad}/two.txt", "--name", "evil\n"], 2, "name must match"),
    # --- numbers of step 1 --------------------------------------------------------------------
    ("filtering", ["{obsid}", "--sigma", "nan"], 2, "argument --sigma: not a finite number"),
    ("filtering", ["{obsid}", "--sigma", "0"], 2, "argument --sigma: must be positive"),
    ("filtering", ["{obsid}", "--sigma", "-3"], 2, "argument --sigma: must be positive"),
    ("filtering", ["{obsid}", "--threshold-mos", "nan"], 2, "argument --threshold-mos: not a finite number"),
    ("filtering", ["{obsid}", "--threshold-pn", "inf"], 2, "argument --threshold-pn: not a finite number"),
    ("filtering", ["{obsid}", "--threshold-pn", "abc"], 2, "argument --threshold-pn: not a number"),
    ("filtering", ["{obsid}", "--binsize", "nan"], 2, "argument --binsize: not a finite number"),
    ("filtering", ["{obsid}", "--binsize", "0"], 2, "argument --binsize: must be positive"),
    ("filtering", ["{obsid}", "--min-gti", "-1"], 2, "argument --min-gti: must be >= 0"),
    ("filtering", ["{obsid}", "--timeout", "-5"], 2, "argument --timeout: must be positive"),
    ("filtering", ["{obsid}", "--method", "magic"], 2, "invalid choice: 'magic'"),
    ("filtering", ["{obsid}", "--cameras", "mos3"], 2, "unknown camera"),
    ("filtering", ["{obsid}", "--cameras", ","], 2, "unknown camera"),
    ("filtering", ["{obsid}", "--expression-pn", "PI >"], 2, "expression"),
    ("filtering", ["{obsid}", "--expression-pn", "__import__('os')"], 2, "expression"),
    ("filtering", ["{obsid}", "--backend", "sas"], 3, "SAS is not usable"),
    ("filtering", ["{obsid}", "--backend", "magic"], 2, "invalid choice: 'magic'"),
    # --- numbers of step 2 --------------------------------------------------------------------
    ("regions", ["{obsid}", "--ra", "nan", "--dec", "1"], 2, "argument --ra: not a finite number"),
    ("regions", ["{obsid}", "--ra", "abc", "--dec", "1"], 2, "argument --ra: not a number"),
    ("regions", ["{obsid}", "--ra", "400", "--dec", "1"], 2, "--ra must be in [0, 360)"),
    ("regions", ["{obsid}", "--ra", "10", "--dec", "-91"], 2, "--dec in [-90, 90]"),
    ("regions", ["{obsid}", "--ra", "10"], 2, "give both --ra and --dec"),
    ("regions", ["{obsid}", "--radius", "nan"], 2, "argument --radius: not a finite number"),
    ("regions", ["{obsid}", "--radius", "0"], 2, "argument --radius: must be positive"),
    ("regions", ["{obsid}", "--radius", "-2"], 2, "argument --radius: must be positive"),
    ("regions", ["{obsid}", "--radius", "100"], 2, "larger than 30'"),
    ("regions", ["{obsid}", "--bkg-inner", "0.5"], 2, "need 1 <= --bkg-inner < --bkg-outer"),
    ("regions", ["{obsid}", "--bkg-inner", "3", "--bkg-outer", "2"], 2, "need 1 <= --bkg-inner < --bkg-outer"),
    ("regions", ["{obsid}", "--bkg-outer", "1e9"], 2, "need 1 <= --bkg-inner < --bkg-outer <= 10"),
    ("regions", ["{obsid}", "--min-sigma", "nan"], 2, "argument --min-sigma: not a finite number"),
    ("regions", ["{obsid}", "--min-sigma", "0"], 2, "argument --min-sigma: must be positive"),
    ("regions", ["0999998009"], 2, "no cleaned events: run step 1"),
    # --- step 3 -------------------------------------------------------------------------------
    ("spectra", ["--obsid", "{obsid}", "--group", "mincounts=nan"], 2, "group"),
    ("spectra", ["--obsid", "{obsid}", "--group", "mincounts=-5"], 2, "group"),
    ("spectra", ["--obsid", "{obsid}", "--group", "bogus"], 2, "group"),
    ("spectra", ["--obsid", "{obsid}", "--src-reg", "{bad}/missing.reg"], 2, "region file not found"),
    ("spectra", ["--obsid", "{obsid}", "--src-reg", "{bad}/random.bin"], 2, "region file"),
    ("spectra", ["--obsid", "{obsid}", "--src-reg", "{bad}/nan.reg"], 2, "not finite"),
    ("spectra", ["--obsid", "{obsid}", "--src-reg", "{bad}/inf_radius.reg"], 2, "not finite"),
    # any shape is taken now (issue 26); this polygon lies off every CCD
    ("spectra", ["--obsid", "{obsid}", "--src-reg", "{bad}/polygon.reg"], 4, "zero exposed area"),
    ("spectra", ["--obsid", "{obsid}", "--src-reg", "{bad}/empty.reg"], 2, "region file holds no region"),
    ("spectra", ["--obsid", "{obsid}", "--rmf", "pn"], 2, "takes CAMERA=FILE"),
    ("spectra", ["--obsid", "{obsid}", "--rmf", "mos7=x.rmf"], 2, "takes CAMERA=FILE"),
    ("spectra", ["--obsid", "{obsid}", "--rmf", "pn={bad}/missing.rmf"], 2, "file not found"),
    ("spectra", ["--obsid", "{obsid}", "--rmf", "pn={bad}/random.bin"], 2, "RMF"),
    ("spectra", ["--obsid", "{obsid}", "--arf", "pn={spectra}/pn.rmf"], 2, "not an ARF"),
    ("spectra", ["--obsid", "{obsid}", "--rmf", "pn={spectra}/pn.arf"], 2, "not an RMF"),
    ("spectra", ["--obsid", "{obsid}", "--timeout", "nan"], 2, "argument --timeout: not a finite number"),
    # --- step 4 -------------------------------------------------------------------------------
    ("fit", [], 2, "--input is required"),
    ("fit", ["--input", "{bad}/nowhere"], 2, ""),
    ("fit", ["--input", "{bad}/notfits.pha"], 2, ""),
    ("fit", ["--input", "{bad}/random.bin"], 2, ""),
    ("fit", ["--input", "{spectra}", "--nh", "nan"], 2, "argument --nh: not a finite number"),
    ("fit", ["--input", "{spectra}", "--nh", "-1"], 2, "argument --nh: must be >= 0"),
    ("fit", ["--input", "{spectra}", "--nh", "1e30"], 2, "--nh 1e+30"),
    ("fit", ["--input", "{spectra}", "--redshift", "nan"], 2, "argument --redshift: not a finite number"),
    ("fit", ["--input", "{spectra}", "--redshift", "-5"], 2, "argument --redshift: must be >= 0"),
    ("fit", ["--input", "{spectra}", "--redshift", "50"], 2, "--redshift 50"),
    ("fit", ["--input", "{spectra}", "--emin", "nan"], 2, "argument --emin: not a finite number"),
    ("fit", ["--input", "{spectra}", "--emin", "5", "--emax", "1"], 2, "empty energy range"),
    ("fit", ["--input", "{spectra}", "--emax", "0"], 2, "argument --emax: must be positive"),
    ("fit", ["--input", "{spectra}", "--conf", "80"], 2, "invalid choice: 80"),
    ("fit", ["--input", "{spectra}", "--goodness", "-1"], 2, "argument --goodness: must be >= 0"),
    ("fit", ["--input", "{spectra}", "--set", "zbremss.kT=nan"], 2, "argument --set: not a finite number"),
    ("fit", ["--input", "{spectra}", "--set", "nonsense"], 2, "argument --set: takes component.par=value"),
    ("fit", ["--input", "{spectra}", "--stat", "magic"], 2, "invalid choice: 'magic'"),
    ("fit", ["--input", "{spectra}", "--abund-table", "xyz"], 2, "invalid choice: 'xyz'"),
    ("fit", ["--input", "{spectra}", "--engine", "pyxspec"], 3, "PyXspec is not importable"),
    ("fit", ["--input", "{spectra}", "--model", ""], 2, "model"),
    ("fit", ["--input", "{spectra}", "--model", "tbabs*(zbremss+"], 2, "model expression"),
    ("fit", ["--input", "{spectra}", "--model", "tbabs*nosuchmodel"], 2, "unknown XSPEC model component"),
    ("fit", ["--input", "{spectra}", "--model", "tbabs*$(touch x)"], 2, "cannot parse model expression"),
    ("fit", ["--input", "{spectra}", "--model", "@nested"], 2, "nested deeper than"),
    ("fit", ["--input", "{spectra}", "--model", "tbabs*meka"], 3, "XSPEC component meka cannot be evaluated"),
    ("fit", ["--input", "{spectra}", "--model", "tbabs*vmeka"], 3, "XSPEC component vmeka cannot be evaluated"),
    ("fit", ["--input", "{spectra}", "--model", "tbabs*(xscat*zbremss)"], 3, "XSPEC component xscat cannot be evaluated"),
    ("fit", ["--input", "{spectra}", "--model", "tbabs*nsx"], 3, "XSPEC component nsx cannot be evaluated here: the XSPEC library crashed (SIGSEGV)"),
    ("fit", ["--input", "{spectra}", "--model", "tbabs*apec"], 3, "AtomDB"),
    ("fit", ["--input", "{spectra}", "--arf", "pn={spectra}/pn.rmf"], 2, "not an ARF"),
    ("fit", ["--input", "{spectra}", "--rmf", "pn={spectra}/pn.arf"], 2, "not an RMF"),
    ("fit", ["--input", "{spectra}", "--bkg", "pn={bad}/random.bin"], 2, ""),
    # --- many observations --------------------------------------------------------------------
    ("multi", ["--list", "{bad}/random.bin"], 2, "observation list"),
    ("multi", ["--list", "{bad}/list_bad_line.txt"], 2, "line 2"),
    ("multi", ["--list", "{bad}/list_empty.txt"], 2, "holds no OBSID"),
    ("multi", ["--list", "{bad}/list_repeat.txt"], 2, "repeats an OBSID"),
    ("multi", ["--list", "{bad}/missing.txt"], 2, "observation list not found"),
    ("multi", ["--list", "{bad}/two.txt", "--workers", "-3"], 2, "--workers"),
    ("pipeline", ["--list", "{bad}/two.txt", "x", "--workers", "-3"], 2, "--workers"),
    ("pipeline", ["--list", "{bad}/random.bin", "x"], 2, "observation list"),
    ("pipeline", ["--demo", "--nh", "nan"], 2, "argument --nh: not a finite number"),
    ("pipeline", ["{obsid}", "x", "--radius", "-1"], 2, "argument --radius: must be positive"),
    ("pipeline", ["{obsid}", "x", "--bkg-outer", "1e9"], 2, "<= 10"),
    ("pipeline", ["{obsid}", "x", "--group", "none=1"], 2, "group"),
    # --- the simulator ------------------------------------------------------------------------
    ("simulate", ["--kt", "nan"], 2, "argument --kt: not a finite number"),
    # --- temperature profile (xspec_analysis.py --profile) --------------------------------------
    ("profile", ["--obsid", "{obsid}", "--target-sn", "0"], 2, "argument --target-sn: must be positive"),
    ("profile", ["--obsid", "{obsid}", "--target-sn", "nan"], 2, "argument --target-sn: not a finite number"),
    ("profile", ["--obsid", "{obsid}", "--max-annuli", "500"], 2, "--max-annuli 500 is more than 30"),
    ("profile", ["--obsid", "{obsid}", "--r-max", "90"], 2, "beyond the field of view"),
    ("profile", ["--obsid", "{obsid}", "--group", "oversample=3"], 2, "group"),
    ("profile", ["--obsid", "{obsid}", "--profile-model", "tbabs*nosuch"], 2, "nosuch"),
    ("profile", ["--obsid", "0999998009"], 2, "no cleaned events: run step 1"),
    ("profile", ["--obsid", "{obsid}", "--target-sn", "5000"], 4, "lower --target-sn"),
    ("simulate", ["--exposure", "-10"], 2, "exposure"),
    ("simulate", ["--preset", "nosuch"], 2, "invalid choice"),
    ("simulate", ["--kt-centre", "-1"], 2, "central kT must be positive"),
    ("simulate", ["--obsid", "12"], 2, "OBSID must be exactly 10 digits"),
]


@pytest.mark.parametrize("program,argv,code,needle", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input(obs, capsys, program, argv, code, needle):
    wd, paths = obs
    before = _snapshot(wd)
    subst = {"wd": str(wd), "obsid": OBSID, "bad": str(wd / "bad"), "spectra": str(paths.spectra)}
    args = [a.format(**subst) if "{" in a else a for a in argv]
    if args and args[-1:] == ["@nested"]:
        args[-1] = (wd / "bad" / "nested.txt").read_text()
    if program != "fit":
        args += ["--workdir", str(wd)]
    if program == "fit" and "--input" in args:
        args += ["--output", str(wd / "fitout")]
    try:
        got = run_main(_mains()[program], args)
    except SystemExit as exc:              # argparse's usage errors exit from inside main
        got = exc.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert got == code, err
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(wd) == before, "an input file was modified"
    assert not _leftovers(wd)


def test_at_least_80_cases():
    assert len(CASES) >= 80


# --- cases that need a subprocess, a resource limit or a second process ------------------------
def _copy(obs, tmp_path):
    wd, _ = obs
    dest = tmp_path / "w"
    shutil.copytree(wd, dest)
    return dest, ObsPaths.of(OBSID, dest)


def test_off_field_positions_are_exit_4(obs, tmp_path):
    wd, paths = _copy(obs, tmp_path)
    r = run_cli(["bash", str(ROOT / "generate_regions.sh"), OBSID, "--ra", "10", "--dec", "-60",
                 "--workdir", str(wd)])
    assert r.returncode == 4 and "outside the" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run_cli(["python", str(ROOT / "spectral_analysis.py"), "--obsid", OBSID, "--src-reg", str(wd / "bad/far.reg"),
                 "--workdir", str(wd)])
    assert r.returncode == 4 and "Traceback" not in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1


def test_non_json_record_and_string_pi(obs, tmp_path):
    wd, paths = _copy(obs, tmp_path)
    (paths.events / "filtering.json").write_text("{ not json")
    r = run_cli(["python", str(ROOT / "spectral_analysis.py"), "--obsid", OBSID, "--workdir", str(wd)])
    assert r.returncode == 2 and "filtering.json" in r.stderr and "Traceback" not in r.stderr, r.stderr
    # an event list whose PI column holds text
    evt = next((wd / "data" / OBSID / "event").glob("*.fits"))
    with fits.open(evt) as h:
        cols = [fits.Column(name=c.name, format="8A" if c.name == "PI" else c.format,
                            array=h["EVENTS"].data[c.name].astype("U8") if c.name == "PI" else h["EVENTS"].data[c.name])
                for c in h["EVENTS"].columns]
        new = fits.BinTableHDU.from_columns(cols, header=h["EVENTS"].header, name="EVENTS")
        fits.HDUList([h[0].copy(), new] + [x.copy() for x in h[2:]]).writeto(evt, overwrite=True)
    r = run_cli(["bash", str(ROOT / "run_filtering.sh"), OBSID, "--workdir", str(wd), "--force"])
    assert r.returncode == 2 and "PI" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_too_few_counts_is_a_skipped_camera(obs, tmp_path):
    """A camera with a handful of events gives no spectrum: skipped with its reason (exit 4
    when it is the only one), never kept as 'ok' until the fit fails."""
    wd, paths = _copy(obs, tmp_path)
    tiny = wd / "bad" / "tiny.reg"
    src = (paths.regions / "src.reg").read_text()
    import re
    tiny.write_text(re.sub(r"circle\(([^,]+),([^,]+),([^)]+)\)", r"circle(\1,\2,10)", src, count=1))
    r = run_cli(["python", str(ROOT / "spectral_analysis.py"), "--obsid", OBSID, "--src-reg", str(tiny),
                 "--workdir", str(wd), "--cameras", "pn"])
    assert r.returncode == 4 and "too few counts" in r.stderr, r.stderr
    rec = json.loads((paths.spectra / "spectra.json").read_text())
    assert rec["cameras"]["pn"]["status"] == "skipped" and "too few counts" in rec["cameras"]["pn"]["reason"]


def test_read_only_results_is_exit_2(obs, tmp_path):
    if os.geteuid() == 0:
        # root ignores permission bits: make the folder a file instead, which nobody can write into
        wd, paths = _copy(obs, tmp_path)
        shutil.rmtree(paths.fit, ignore_errors=True)
        paths.fit.parent.mkdir(parents=True, exist_ok=True)
        paths.fit.write_text("not a folder")
        target = paths.fit
    else:
        wd, paths = _copy(obs, tmp_path)
        os.chmod(paths.spectra, 0o555)
        target = paths.spectra
    r = run_cli(["python", str(ROOT / "xspec_analysis.py"), "--input", str(paths.spectra), "--model", MODEL,
                 "--output", str(paths.fit)] if target == paths.fit else
                ["python", str(ROOT / "spectral_analysis.py"), "--obsid", OBSID, "--workdir", str(wd), "--force"])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert str(target) in r.stderr


def test_full_disk_is_exit_2_and_leaves_nothing(obs, tmp_path):
    """Writing beyond a file-size limit fails as a full disk does (EFBIG/ENOSPC): exit 2
    naming the folder; no half files; the simulator leaves no data folder behind."""
    wd, paths = _copy(obs, tmp_path)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    r = subprocess.run(["bash", str(ROOT / "run_filtering.sh"), OBSID, "--workdir", str(wd), "--force"],
                       capture_output=True, text=True, preexec_fn=limit, env=env, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no space" in r.stderr.lower(), r.stderr
    assert not _leftovers(wd)
    r = subprocess.run([sys.executable, "-m", "xmmext.simulate.observation", "--obsid", "0999998002", "--exposure", "3000",
                        "--workdir", str(wd)], capture_output=True, text=True, preexec_fn=limit, env=env,
                       timeout=600)
    assert r.returncode == 2 and "no space" in r.stderr.lower(), r.stderr
    assert not (wd / "data" / "0999998002").exists()
    assert not _leftovers(wd)


@pytest.mark.slow
def test_unreachable_scheduler_is_exit_3_quickly(obs, tmp_path):
    wd, _ = obs
    lst = tmp_path / "one.txt"
    lst.write_text(OBSID + "\n")
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), "--list", str(lst), "x",
                 "--scheduler", "tcp://127.0.0.1:9", "--workdir", str(tmp_path)], timeout=120)
    assert r.returncode == 3 and "scheduler" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_second_run_on_the_same_observation_is_refused(obs, tmp_path):
    from xmmext.core.fileio import observation_lock
    wd, paths = _copy(obs, tmp_path)
    with observation_lock(paths.results):
        r = run_cli(["bash", str(ROOT / "run_filtering.sh"), OBSID, "--workdir", str(wd), "--force"])
    assert r.returncode == 2 and "another xmmext run" in r.stderr, r.stderr
    r = run_cli(["bash", str(ROOT / "run_filtering.sh"), OBSID, "--workdir", str(wd)])
    assert r.returncode == 0, r.stderr


def test_part_cleanup_spares_other_programs_files(obs, tmp_path):
    wd, paths = _copy(obs, tmp_path)
    out = tmp_path / "fitout"
    out.mkdir()
    (out / ".draft.tex.part").write_text("someone else's")
    (out / ".fit.json.xmmext-abc.part").write_text("ours, from a killed run")
    r = run_cli(["python", str(ROOT / "xspec_analysis.py"), "--input", str(paths.spectra), "--model", MODEL,
                 "--output", str(out)])
    assert r.returncode == 0, r.stderr
    assert (out / ".draft.tex.part").exists() and not (out / ".fit.json.xmmext-abc.part").exists()


@pytest.mark.slow
def test_xcm_and_report_quote_paths(obs, tmp_path):
    """A work directory named like a Tcl/shell command substitutes nothing: fit.xcm holds
    names relative to its spectra, the report's commands are shell-quoted."""
    import shlex
    wd, _ = obs
    evil = tmp_path / "w[exec touch X] $env(HOME)"
    shutil.copytree(wd, evil)
    paths = ObsPaths.of(OBSID, evil)
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), OBSID, "q", "--workdir", str(evil),
                 "--cameras", "pn", "--model", MODEL, "--nh", "0.03"])
    assert r.returncode == 0, r.stderr
    xcm = (paths.fit / "fit.xcm").read_text()
    assert "[" not in xcm and "$" not in xcm
    page = (paths.results / "report.html").read_text()
    import html
    cmds = html.unescape(page.split("<h2>Reproduce</h2>")[1].split("<pre>")[1].split("</pre>")[0]).splitlines()
    assert cmds
    for line in cmds:
        assert str(evil) in shlex.split(line) or "--input" in line
