"""The whole pipeline with --backend sas, against stand-ins that behave as SAS 21 and SAS 22
do where the code relies on it (tests/sas_standins.py; issue 13). Not a real SAS: the
README says what has not been run against one."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import ROOT, run_cli, simulate_into
from sas_standins import install

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`

OBSID = "0999996001"
CALIBRATED = ("backscale", "rmfgen", "arfgen", "eexpmap", "atthkgen", "edetect_chain")


@pytest.mark.parametrize("version", ["21", "22"])
def test_pipeline_reaches_every_step_with_sas(version, tmp_path):
    wd = tmp_path / "w"
    simulate_into(wd, obsid=OBSID, seed=5, exposure=8000.0, cameras=["mos2"])
    events = tmp_path / "odf_events"                  # what the stand-in chains 'make' from the ODF
    shutil.move(str(wd / "data" / OBSID / "event"), events)
    odf = wd / "data" / OBSID / "ODF"
    odf.mkdir(parents=True)
    (odf / "0001_0999996001_SCX00000SUM.ASC").write_text("odf")
    calls = install(tmp_path / "bin", version)
    (tmp_path / "ccf").mkdir()
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "SAS_DIR": str(tmp_path), "SAS_CCFPATH": str(tmp_path / "ccf"),
           "SAS_CCF": "/stale/other_observation/ccf.cif", "XMMEXT_TEST_EVENTS": str(events), "XMMEXT_TEST_OBSID": OBSID}
    if version == "21":       # where the versions differ (step 1: espfilt names, epchain): step 1 alone
        r = run_cli(["bash", str(ROOT / "run_filtering.sh"), OBSID, "--backend", "sas", "--workdir", str(wd)],
                    env_extra=env)
    else:
        r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), OBSID, "sas_test", "--backend", "sas",
                     "--workdir", str(wd), "--model", "tbabs*zbremss", "--nh", "0.03", "--redshift", "0.05"],
                    env_extra=env)
    assert r.returncode == 0, r.stdout + r.stderr
    log = calls.read_text().splitlines()
    called = {line.split()[0] for line in log}
    res = wd / "results" / OBSID
    filt = json.loads((res / "events" / "filtering.json").read_text())
    assert filt["mos2"]["status"] == "ok" and filt["mos2"]["backend"] == "sas"
    assert filt["mos2"]["sas_version"].startswith(version)
    if version == "21":
        assert {"sasversion", "cifbuild", "odfingest", "emchain", "espfilt", "evselect"} <= called
        return
    for task in ("sasversion", "cifbuild", "odfingest", "emchain", "espfilt", "evselect", "atthkgen", "eexpmap",
                 "edetect_chain", "backscale", "rmfgen", "arfgen", "specgroup"):
        assert task in called, task                    # every step ran through SAS
    assert json.loads((res / "spectra" / "spectra.json").read_text())["backend"] == "sas"
    fit = json.loads((res / "fit" / "fit.json").read_text())
    assert fit["engine"] == "sherpa" and fit["parameters"]["zbremss.kT"]["value"] > 0
