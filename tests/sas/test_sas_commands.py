"""SAS backend: the command lines it builds from the task documentation, and how its one
runner runs and judges tasks.

No SAS is installed here: tasks are replaced by stand-in executables on PATH.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sas_fakes import fake_task

from xmmext.sas import filtering as sasf
from xmmext.sas import tasks as sast
from xmmext.core.errors import DependencyError


def test_parse_version():
    assert sast.parse_sas_version("xmmsas_20230412_1735-21.0.0") == (21, 0, 0)
    assert sast.parse_sas_version("sasversion:- ... [xmmsas_20190531_1155-18.0.0]") == (18, 0, 0)
    with pytest.raises(DependencyError):
        sast.parse_sas_version("nothing here")


def test_parse_version_takes_the_release_tag_not_a_task_version():
    """Issue 13, item 1: the task's own version printed first is not the SAS release; SAS 22
    prints '[22.0.0-<hash>-<date>]'."""
    assert sast.parse_sas_version("sasversion (sasversion-1.3.2) [xmmsas_20211130_0941-21.0.0]") == (21, 0, 0)
    assert sast.parse_sas_version("sasversion:- Executing (routine): sasversion (sasversion-1.3.2) "
                                 "[22.0.0-a8f2c2afa-20250304]") == (22, 0, 0)
    # the form real SAS files carry (../shared: CREATOR/XPROC0 of the A907 products)
    assert sast.parse_sas_version("eexpmap (eexpmap-4.6.5) [xmmsas_20131209_1901-13.5.0]") == (13, 5, 0)


def test_espfilt_command_sas21_pn():
    t = sasf.espfilt(Path("/w/P01PNS003PIEVLI0000.FIT"), "pn", "S003", (21, 0, 0), Path("/w/ccf.cif"),
                    ootfile=Path("/w/P01PNS003OOEVLI0000.FIT"))
    assert t.argv == ["espfilt", "eventfile=/w/P01PNS003PIEVLI0000.FIT", "withoot=yes",
                      "ootfile=/w/P01PNS003OOEVLI0000.FIT", "method=histogram", "withsmoothing=yes",
                      "smooth=51", "withbinning=yes", "binsize=60", "ratio=1.2",
                      "elow=2500", "ehigh=8500", "rangescale=25", "allowsigma=3", "keepinterfiles=no"]
    assert t.outputs == ["pnS003-gti.fits"]
    assert t.env == {"SAS_CCF": "/w/ccf.cif"}


@pytest.mark.parametrize("version, longnames, gti", [
    ((20, 0, 0), True, "mos1S001-gti-2500-8500.fits"),
    ((21, 0, 0), False, "mos1S001-gti.fits"),
    ((21, 1, 0), False, "mos1S001-gti.fits"),
    ((22, 0, 0), False, "mos1S001-gti.fits")])
def test_espfilt_version_matrix(version, longnames, gti):
    """Issue 13, item 2: withlongnames and the energy-suffixed names are SAS 20 only."""
    t = sasf.espfilt(Path("m1.fits"), "mos1", "S001", version, Path("ccf.cif"))
    assert ("withlongnames=yes" in t.argv) == longnames
    assert t.outputs == [gti]


def test_espfilt_before_sas20_is_refused_with_the_reason():
    """Issue 13, item 3: older espfilt is not guessed at (exit 3 with what to do)."""
    with pytest.raises(DependencyError, match="needs SAS >= 20"):
        sasf.espfilt(Path("m1.fits"), "mos1", "S001", (19, 1, 0), Path("ccf.cif"))


def test_espfilt_ratio_method_uses_its_own_band():
    """Issue 13, item 4: the ratio method needs elow=8000 ehigh=12000 (ESAS cookbook)."""
    t = sasf.espfilt(Path("m1.fits"), "mos1", "S001", (21, 0, 0), Path("ccf.cif"), method="ratio")
    args = dict(t.params)
    assert (args["method"], args["elow"], args["ehigh"]) == ("ratio", "8000", "12000")
    h = dict(sasf.espfilt(Path("m1.fits"), "mos1", "S001", (21, 0, 0), Path("ccf.cif")).params)
    assert (h["elow"], h["ehigh"]) == ("2500", "8500")


def test_evselect_and_tabgtigen_commands():
    rate = sasf.evselect_rate(Path("m1.fits"), "mos1", "rate.fits", 100)
    assert rate.argv == ["evselect", "table=m1.fits", "withrateset=yes", "rateset=rate.fits",
                         "maketimecolumn=yes", "timecolumn=TIME", "timebinsize=100", "makeratecolumn=yes",
                         "expression=#XMMEA_EM && (PI>10000) && (PATTERN==0)"]
    gti = sasf.tabgtigen("rate.fits", 0.35, "gti.fits")
    assert gti.argv == ["tabgtigen", "table=rate.fits", "expression=RATE<=0.35", "gtiset=gti.fits"]
    clean = sasf.evselect_clean(Path("pn.fits"), Path("gti.fits"), "#XMMEA_EP && (PATTERN<=4) && (FLAG==0)")
    assert clean.argv == ["evselect", "table=pn.fits", "withfilteredset=yes", "filteredset=clean.fits",
                          "destruct=yes", "keepfilteroutput=yes", "filtertype=expression",
                          "expression=#XMMEA_EP && (PATTERN<=4) && (FLAG==0) && GTI(gti.fits,TIME)",
                          "updateexposure=yes", "filterexposure=yes"]
    # an argument list: the expression stays one argument, nothing goes through a shell
    assert sum(a.startswith("expression=") for a in clean.argv) == 1


def test_chain_commands():
    assert sasf.cifbuild(Path("/d/ODF")).argv == ["cifbuild", "withccfpath=no", "analysisdate=now",
                                                 "category=XMMCCF", "calindexset=ccf.cif", "fullpath=yes"]
    # odfingest reads odfdir only with withodfdir=yes (its documentation; default: SAS_ODF)
    assert sasf.odfingest(Path("/d/ODF"), Path("ccf.cif")).argv == ["odfingest", "odfdir=/d/ODF", "withodfdir=yes",
                                                                   "outdir=."]
    # every imaging exposure (epchain documentation: the default is the first only)
    assert sasf.epchain(Path("s.SAS"), Path("c.cif"), out_of_time=True).argv == [
        "epchain", "datamode=IMAGING", "odfaccess=all", "withoutoftime=yes"]
    assert "runradmonfix=N" in sasf.epchain(Path("s.SAS"), Path("c.cif"), sas_version=(21, 0, 0)).argv
    assert "runradmonfix=N" not in sasf.epchain(Path("s.SAS"), Path("c.cif"), sas_version=(22, 0, 0)).argv
    assert sasf.emchain(Path("s.SAS"), Path("c.cif")).env == {"SAS_ODF": "s.SAS", "SAS_CCF": "c.cif"}


def test_runner_success_moves_outputs_and_isolates_pfiles(tmp_path, fakebin):
    fake_task(fakebin, "tabgtigen", """
        args = dict(a.split("=", 1) for a in sys.argv[1:])
        open(args["gtiset"], "w").write(json.dumps({"PFILES": os.environ["PFILES"],
            "HEADASNOQUERY": os.environ.get("HEADASNOQUERY"), "cwd": os.getcwd()}))
        print("tabgtigen:- done")
    """)
    out = sast.run_task(sasf.tabgtigen("rate.fits", 0.4, "g.fits"), tmp_path / "dest", tmp_path / "logs", 30)
    assert out == [tmp_path / "dest" / "g.fits"]
    info = json.loads(out[0].read_text())
    assert info["HEADASNOQUERY"] == "1"
    user, system = info["PFILES"].split(";")
    assert user.startswith(info["cwd"]) and system == "/sys/pf"      # private user pfiles
    assert not list((tmp_path / "dest").glob("xmmext_*"))            # temp dir removed
    assert "tabgtigen:- done" in (tmp_path / "logs" / "sas_tabgtigen.log").read_text()


def test_runner_error_line_fails(tmp_path, fakebin):
    fake_task(fakebin, "evselect", """
        print("evselect:- Executing")
        print("** evselect: error (NoSuchFile), The file m1.fits could not be opened")
    """)
    with pytest.raises(sast.SasTaskError) as exc:
        sast.run_task(sasf.evselect_rate(Path("m1.fits"), "mos1"), tmp_path, tmp_path / "logs", 30)
    line = exc.value.one_line()
    assert "NoSuchFile" in line and "sas_evselect.log" in line and exc.value.exit_code == 4


@pytest.mark.parametrize("line", ["** backscale::arfgen: fatal error (FileNotFound), cannot open ccf.cif",
                                  "** especget::rmfgen: error (NoCcf), no CCF"])
def test_runner_nested_task_error_lines_fail(tmp_path, fakebin, line):
    """Issue 13 (smaller): error lines of a task run by another task, as SAS prints them."""
    fake_task(fakebin, "evselect", f"""
        print("evselect:- Executing")
        print({line!r})
    """)
    with pytest.raises(sast.SasTaskError) as exc:
        sast.run_task(sasf.evselect_rate(Path("m1.fits"), "mos1"), tmp_path, tmp_path / "logs", 30)
    assert line.split("(")[1].split(")")[0] in exc.value.one_line()


def test_runner_missing_output_fails(tmp_path, fakebin):
    fake_task(fakebin, "tabgtigen", "print('finished without writing anything')\n")
    with pytest.raises(sast.SasTaskError, match="did not produce gti.fits"):
        sast.run_task(sasf.tabgtigen("rate.fits", 0.4), tmp_path, tmp_path / "logs", 30)


def test_runner_nonzero_exit_fails(tmp_path, fakebin):
    fake_task(fakebin, "tabgtigen", "sys.exit(5)\n")
    with pytest.raises(sast.SasTaskError, match="status 5"):
        sast.run_task(sasf.tabgtigen("rate.fits", 0.4), tmp_path, tmp_path / "logs", 30)


def test_runner_timeout_kills_the_real_process(tmp_path, fakebin):
    pidfile = tmp_path / "child.pid"
    # the task starts a grandchild (as SAS perl wrappers do) and both hang
    fake_task(fakebin, "espfilt", f"""
        import subprocess
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        time.sleep(60)
    """)
    t0 = time.monotonic()
    with pytest.raises(sast.SasTaskError, match="timed out"):
        sast.run_task(sasf.espfilt(Path("e.fits"), "mos1", "S001", (21, 0, 0), Path("c.cif")), tmp_path,
                     tmp_path / "logs", timeout=2)
    assert time.monotonic() - t0 < 20
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    status = Path(f"/proc/{pid}/status")
    # gone, or a zombie waiting for PID 1 to reap it: either way no longer running
    assert not status.exists() or "\nState:\tZ" in status.read_text()
