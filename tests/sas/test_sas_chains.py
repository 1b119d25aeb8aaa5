"""SAS backend: the chains of steps 1-3 (filtering, images, spectra) run against stand-in
tasks that behave as the SAS documentation says.

No SAS is installed here: tasks are replaced by stand-in executables on PATH.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits

from conftest import ROOT
from sas_fakes import fake_task

import xmmext.core.errors as errors_mod
from xmmext.sas import filtering as sasf
from xmmext.sas import images as sasi
from xmmext.sas import spectra as sass
from xmmext.steps import FilterOptions
from xmmext.core.paths import ObsPaths

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`


def _observation_with_odf(tmp_path, monkeypatch) -> ObsPaths:
    """Observation 0999990201 with an ODF summary file in tmp_path, and an initialised
    (stand-in) SAS: SAS_DIR and an existing SAS_CCFPATH."""
    paths = ObsPaths.of("0999990201", tmp_path)
    paths.odf.mkdir(parents=True)
    (paths.odf / "0001_0999990201_SCX00000SUM.SAS").write_text("odf")
    monkeypatch.setenv("SAS_DIR", str(tmp_path))
    (tmp_path / "ccfdir").mkdir()
    monkeypatch.setenv("SAS_CCFPATH", str(tmp_path / "ccfdir"))
    return paths


def test_full_sas_chain_with_stand_ins(short_obs, tmp_path, fakebin, monkeypatch):
    """cifbuild -> odfingest -> epchain (OOT, then events) -> espfilt -> evselect, orchestrated
    by run_sas_filtering; stand-ins copy a simulated event list where SAS would make one."""
    wd, truth = short_obs
    evt = wd / "data/0999990201/event/pn_evt.fits"
    paths = _observation_with_odf(tmp_path, monkeypatch)
    calls = tmp_path / "calls.txt"
    log_call = f"open({str(calls)!r}, 'a').write(' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]) + '\\n')\n"
    fake_task(fakebin, "sasversion", "print('xmmsas_20230412_1735-21.0.0')\n")
    fake_task(fakebin, "cifbuild", prefix=log_call, body="open('ccf.cif', 'w').write('cif')\n")
    fake_task(fakebin, "odfingest", prefix=log_call, body="open('0001_0999990201_SCX00000SUM.SAS', 'w').write('sum')\n")
    fake_task(fakebin, "epchain", prefix=log_call, body=f"""
        oot = 'withoutoftime=yes' in sys.argv
        name = 'P0999990201PNS003' + ('OOEVLI0000.FIT' if oot else 'PIEVLI0000.FIT')
        shutil.copy({str(evt)!r}, name)
    """)
    fake_task(fakebin, "espfilt", prefix=log_call, body="""
        from astropy.io import fits
        import numpy as np
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        with fits.open(args['eventfile']) as h:
            t0, t1 = h['EVENTS'].header['TSTART'], h['EVENTS'].header['TSTOP']
        g = fits.BinTableHDU.from_columns([fits.Column('START', 'D', array=np.array([t0])),
                                           fits.Column('STOP', 'D', array=np.array([t0 + 0.5 * (t1 - t0)]))], name='STDGTI')
        # SAS >= 21 names (no withlongnames): <inst><exp>-gti.fits
        name = 'pnS003-gti-2500-8500.fits' if 'withlongnames=yes' in sys.argv else 'pnS003-gti.fits'
        fits.HDUList([fits.PrimaryHDU(), g]).writeto(name)
    """)
    fake_task(fakebin, "evselect", prefix=log_call, body="""
        from astropy.io import fits
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        with fits.open(args['table']) as h:        # updateexposure=yes: ONTIME and a smaller LIVETIME
            h['EVENTS'].header['LIVETIME'] = 0.98 * h['EVENTS'].header['ONTIME']
            h['EVENTS'].header['EXPOSURE'] = h['EVENTS'].header['ONTIME']
            h.writeto(args['filteredset'])
    """)
    summary, _ = sasf.run_sas_filtering(paths, FilterOptions(cameras=["pn"]), timeout=60)
    live = fits.getheader(paths.events / "pn_clean_evt.fits", "EVENTS")["LIVETIME"]
    assert summary["pn"]["exposure_after_s"] == pytest.approx(live)        # live time, as the native path
    assert "exposure_choice" in summary["pn"]
    assert summary["pn"]["status"] == "ok" and summary["pn"]["sas_version"] == "21.0.0"
    assert summary["pn"]["gti"][0][1] - summary["pn"]["gti"][0][0] == pytest.approx(5000.0)
    order = [line.split()[0] for line in calls.read_text().splitlines()]
    assert order == ["cifbuild", "odfingest", "epchain", "epchain", "espfilt", "evselect"]
    lines = calls.read_text().splitlines()
    assert "withoutoftime=yes" in lines[2] and "withoutoftime=no" in lines[3]     # OOT run first
    assert "ootfile=" in lines[4] and "OOEVLI" in lines[4]
    assert "method=histogram" in lines[4]          # the default 'auto' is resolved, never passed to SAS
    assert "GTI(" in lines[5] and "FLAG==0" in lines[5]
    assert (paths.events / "pn_clean_evt.fits").exists()
    assert summary["pn"]["backend"] == "sas"
    for task in ("cifbuild", "odfingest", "epchain", "espfilt", "evselect"):
        assert (paths.logs / f"sas_{task}.log").exists()


def test_several_pn_exposures_longest_used_with_its_own_oot(short_obs, tmp_path, fakebin, monkeypatch):
    """Issue 13, item 12: epchain makes every imaging exposure (odfaccess=all); the longest is
    used, said so in filtering.json, with the out-of-time list of that same exposure."""
    wd, truth = short_obs
    evt = wd / "data/0999990201/event/pn_evt.fits"
    paths = _observation_with_odf(tmp_path, monkeypatch)
    calls = tmp_path / "calls.txt"
    log_call = f"open({str(calls)!r}, 'a').write(' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]) + '\\n')\n"
    fake_task(fakebin, "sasversion", "print('[xmmsas_20230412_1735-21.0.0]')\n")
    fake_task(fakebin, "cifbuild", "open('ccf.cif', 'w').write('cif')\n")
    fake_task(fakebin, "odfingest", "open('0001_0999990201_SCX00000SUM.SAS', 'w').write('sum')\n")
    fake_task(fakebin, "epchain", prefix=log_call, body=f"""
        from astropy.io import fits
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        assert args.get('odfaccess') == 'all'
        kind = 'OOEVLI' if args['withoutoftime'] == 'yes' else 'PIEVLI'
        if kind == 'OOEVLI':
            open('raw_kept.txt', 'w').write('raw')                  # what keepintermediate=raw leaves
        elif not os.path.exists('raw_kept.txt'):
            print('** epchain: error (NoRaw), the normal run was not in the out-of-time run folder')
            sys.exit(1)
        for exp, frac in (('S003', 0.3), ('S004', 1.0)):          # a short and a long exposure
            with fits.open({str(evt)!r}) as h:
                t0 = h['EVENTS'].header['TSTART']
                h['EVENTS'].header['TSTOP'] = t0 + frac * (h['EVENTS'].header['TSTOP'] - t0)
                h.writeto('P0999990201PN' + exp + kind + '0000.FIT')
    """)
    fake_task(fakebin, "espfilt", prefix=log_call, body="""
        from astropy.io import fits
        import numpy as np
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        g = fits.BinTableHDU.from_columns([fits.Column('START', 'D', array=np.array([0.0])),
                                           fits.Column('STOP', 'D', array=np.array([1e10]))], name='STDGTI')
        fits.HDUList([fits.PrimaryHDU(), g]).writeto('pnS004-gti.fits')
    """)
    fake_task(fakebin, "evselect", "args = dict(a.split('=', 1) for a in sys.argv[1:]); shutil.copy(args['table'], args['filteredset'])\n")
    summary, _ = sasf.run_sas_filtering(paths, FilterOptions(cameras=["pn"]), timeout=60)
    assert summary["pn"]["status"] == "ok"
    assert summary["pn"]["input"].endswith("PNS004PIEVLI0000.FIT")
    assert "longest of 2 exposures" in summary["pn"]["exposure_choice"]
    esp = [line for line in calls.read_text().splitlines() if line.startswith("espfilt")][0]
    assert "PNS004OOEVLI0000.FIT" in esp and "eventfile=" in esp and "PNS004PIEVLI" in esp
    assert "runradmonfix=N" in calls.read_text()                   # SAS 21.0.0
    ep = [line for line in calls.read_text().splitlines() if line.startswith("epchain")]
    assert "withoutoftime=yes" in ep[0] and "keepintermediate=raw" in ep[0]   # OOT first, raw files kept
    assert "withoutoftime=no" in ep[1] and "keepintermediate" not in ep[1]


def test_sas_detection_says_when_lcurve_is_missing(tmp_path, fakebin, monkeypatch):
    """Issue 13 (smaller): emchain's flare light curves need HEASoft's lcurve."""
    from xmmext.pipeline.environment import detect_sas
    fake_task(fakebin, "sasversion", "print('[xmmsas_20230412_1735-21.0.0]')\n")
    monkeypatch.setenv("SAS_DIR", str(tmp_path))
    monkeypatch.setenv("SAS_CCFPATH", str(tmp_path))
    monkeypatch.setenv("PATH", f"{fakebin}:/usr/bin:/bin")
    assert "lcurve" in detect_sas().detail
    fake_task(fakebin, "lcurve", "pass\n")
    assert "lcurve" not in detect_sas().detail


def test_fixed_method_chain_finds_its_light_curve(short_obs, tmp_path, fakebin, monkeypatch):
    """Issue 13, item 5: tabgtigen runs in its own private folder, so its input light curve
    must be given by absolute path (the stand-in, like SAS, opens `table` from its cwd)."""
    wd, truth = short_obs
    evt = wd / "data/0999990201/event/mos1_evt.fits"
    paths = _observation_with_odf(tmp_path, monkeypatch)
    fake_task(fakebin, "sasversion", "print('sasversion (sasversion-1.3.2) [xmmsas_20230412_1735-21.0.0]')\n")
    fake_task(fakebin, "cifbuild", "open('ccf.cif', 'w').write('cif')\n")
    fake_task(fakebin, "odfingest", "open('0001_0999990201_SCX00000SUM.SAS', 'w').write('sum')\n")
    fake_task(fakebin, "emchain", f"shutil.copy({str(evt)!r}, 'P0999990201M1S001MIEVLI0000.FIT')\n")
    fake_task(fakebin, "evselect", """
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        out = args.get('rateset') or args.get('filteredset')
        shutil.copy(args['table'], out)
    """)
    fake_task(fakebin, "tabgtigen", """
        from astropy.io import fits
        import numpy as np
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        if not os.path.exists(args['table']):
            print(f"** tabgtigen: error (NoSuchFile), {args['table']} not found")
            sys.exit(1)
        g = fits.BinTableHDU.from_columns([fits.Column('START', 'D', array=np.array([0.0])),
                                           fits.Column('STOP', 'D', array=np.array([1e10]))], name='STDGTI')
        fits.HDUList([fits.PrimaryHDU(), g]).writeto(args['gtiset'])
    """)
    fake_task(fakebin, "emanom", """
        from astropy.io import fits
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        with fits.open(args['eventfile'], mode='update') as h:     # as emanom writekeys=yes does
            for n, flag in ((1, 'G'), (2, 'G'), (4, 'B'), (5, 'I')):
                h[0].header[f'ANOMFL{n}'] = flag
    """)
    summary, _ = sasf.run_sas_filtering(paths, FilterOptions(method="fixed", cameras=["mos1"]), timeout=60)
    assert summary["mos1"]["status"] == "ok" and summary["mos1"]["method"] == "fixed"
    # issue 13 (smaller): emanom's bad (B) CCD is left out of the cleaned list and recorded
    assert summary["mos1"]["excluded_ccds"] == [4] and "(CCDNR != 4)" in summary["mos1"]["expression"]
    assert summary["mos1"]["anomalous_ccds"][5] == "I"


def test_spectra_task_list_commands():
    tasks = sass.sas_spectra_tasks("pn", Path("/r/pn_clean_evt.fits"), "((X,Y) IN circle(1,2,3))",
                                  "((X,Y) IN annulus(1,2,4,5))", "#XMMEA_EP && (PATTERN<=4) && (FLAG==0)", 20)
    names = [t.task for t in tasks]
    assert names == ["evselect", "evselect", "backscale", "backscale", "evselect", "rmfgen", "arfgen", "specgroup"]
    assert tasks[0].argv == ["evselect", "table=/r/pn_clean_evt.fits", "withspectrumset=yes", "spectrumset=pn_src.pha",
                             "energycolumn=PI", "spectralbinsize=5", "withspecranges=yes", "specchannelmin=0",
                             "specchannelmax=20479",
                             "expression=#XMMEA_EP && (PATTERN<=4) && (FLAG==0) && ((X,Y) IN circle(1,2,3))"]
    assert tasks[2].argv == ["backscale", "spectrumset=pn_src.pha", "badpixlocation=/r/pn_clean_evt.fits"]
    assert tasks[6].argv == ["arfgen", "spectrumset=pn_src.pha", "arfset=pn.arf", "withrmfset=yes", "rmfset=pn.rmf",
                             "extendedsource=yes", "detmaptype=dataset", "detmaparray=pn_detmap.fits",
                             "badpixlocation=/r/pn_clean_evt.fits", "setbackscale=no"]
    # issue 13, item 11: the RMF weighted by the source's detector map, not its centre
    assert tasks[5].argv == ["rmfgen", "spectrumset=pn_src.pha", "rmfset=pn.rmf", "detmaptype=dataset",
                             "detmaparray=pn_detmap.fits"]
    assert "mincounts=20" in tasks[7].argv and "backgndset=pn_bkg.pha" in tasks[7].argv
    assert not any(a.startswith("withbgdset") for a in tasks[7].argv)       # not a specgroup parameter
    assert "specchannelmax=11999" in sass.evselect_spectrum(Path("m.fits"), "mos1", "x", "s.pha").argv


def test_sas_spectra_chain_with_stand_ins(processed_obs, tmp_path, fakebin, monkeypatch):
    import shutil as sh
    wd, truth, paths, _ = processed_obs
    for sub in ("events", "regions"):
        sh.copytree(paths.results / sub, tmp_path / "results" / paths.obsid / sub)
    p2 = ObsPaths.of(paths.obsid, tmp_path)
    # issue 13, items 9/10: without this observation's CCF and ODF summary, a clear error
    with pytest.raises(errors_mod.UsageError, match="run step 1 with --backend sas"):
        sass.run_sas_spectra(p2, ["pn"], timeout=60)
    (p2.results / "sas").mkdir()
    (p2.results / "sas" / "ccf.cif").write_text("cif")
    (p2.results / "sas" / "0001_0999994001_SCX00000SUM.SAS").write_text("sum")
    monkeypatch.setenv("SAS_CCF", "/elsewhere/another_observation/ccf.cif")      # stale, from the shell
    calls = tmp_path / "calls.txt"
    log_call = (f"open({str(calls)!r}, 'a').write(' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "
                f"' SAS_CCF=' + os.environ.get('SAS_CCF', '') + '\\n')\n")
    write_pha = """
        from astropy.io import fits
        import numpy as np
        def pha(name):
            fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
                [fits.Column('CHANNEL', 'I', array=np.arange(10)), fits.Column('COUNTS', 'J', array=np.ones(10, int))],
                name='SPECTRUM')]).writeto(name)
        args = dict(a.split('=', 1) for a in sys.argv[1:])
    """
    fake_task(fakebin, "evselect", prefix=log_call, body=write_pha + """
        if 'spectrumset' in args: pha(args['spectrumset'])
        else: open(args['imageset'], 'w').write('detmap')
    """)
    fake_task(fakebin, "backscale", prefix=log_call, body="""
        from astropy.io import fits
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        with fits.open(args['spectrumset'], mode='update') as h:
            h['SPECTRUM'].header['BACKSCAL'] = 12345.0
    """)
    fake_task(fakebin, "rmfgen", prefix=log_call, body="args = dict(a.split('=', 1) for a in sys.argv[1:]); open(args['rmfset'], 'w').write('rmf')\n")
    fake_task(fakebin, "arfgen", prefix=log_call, body="args = dict(a.split('=', 1) for a in sys.argv[1:]); open(args['arfset'], 'w').write('arf')\n")
    fake_task(fakebin, "specgroup", prefix=log_call, body="args = dict(a.split('=', 1) for a in sys.argv[1:]); open(args['groupedset'], 'w').write('grp')\n")
    res, _ = sass.run_sas_spectra(p2, ["pn"], mincounts=25, timeout=60)
    assert res["cameras"]["pn"]["status"] == "ok"
    from astropy.io import fits
    assert fits.getheader(p2.spectra / "pn_src.pha", "SPECTRUM")["BACKSCAL"] == 12345.0   # in-place task result kept
    for f in ("pn_bkg.pha", "pn.rmf", "pn.arf", "pn_src_grp.pha", "pn_detmap.fits"):
        assert (p2.spectra / f).exists(), f
    order = [line.split()[0] for line in calls.read_text().splitlines()]
    assert order == ["evselect", "evselect", "backscale", "backscale", "evselect", "rmfgen", "arfgen", "specgroup"]
    for line in calls.read_text().splitlines():
        if line.split()[0] in ("backscale", "rmfgen", "arfgen"):
            assert line.endswith(f"SAS_CCF={p2.results / 'sas' / 'ccf.cif'}"), line
    assert not list(p2.spectra.glob("xmmext_*"))


def test_evselect_image_grid_reproduces_a_real_sas_command():
    """Issue 13, item 7: the image range evselect needs for a grid, checked against the real
    SAS 13.5 image of ../shared (its XPROC0 has ximagemin=3649 ximagemax=48106 bin 87 for
    512 pixels); the old command (x0 .. x0 + n*bin) makes 513 pixels half a bin off."""
    from xmmext.sky.images import ImageGrid
    grid = ImageGrid(x0=3648.5, y0=3648.5, n=512, binsize=87.0)      # the real image's grid (LTV/LTM)
    t = sasi.evselect_image(Path("ev.fits"), "mos1", (500, 2000), grid, "img.fits", "#XMMEA_EM")
    args = dict(t.params)
    assert (args["ximagemin"], args["ximagemax"]) == ("3649", "48106")
    assert (args["yimagemin"], args["yimagemax"]) == ("3649", "48106")
    assert "PI in [500:2000]" in args["expression"]                   # both ends, as the real command
    shared = ROOT.parent / "shared" / "data" / "xmm_a907_0201903501" / "sas_images"
    if shared.is_dir():
        h = fits.getheader(shared / "0201903501_mos1_exp1-0.50-2.00keVimg.fits")
        g = ImageGrid.from_header(h)
        assert "ximagemin=3649 ximagemax=48106" in h["XPROC0"]
        assert (g.x0, g.n, g.binsize) == (pytest.approx(3648.5), 512, pytest.approx(87.0))


def test_sas_regions_path_with_stand_ins(processed_obs, tmp_path, fakebin, monkeypatch):
    """evselect images on the native grid, eexpmap, edetect_chain list -> regions; extended
    detections in the list are not excluded as point sources."""
    import shutil as sh
    from xmmext.steps import RegionOptions, run_regions
    wd, truth, paths, _ = processed_obs
    sh.copytree(paths.results / "events", tmp_path / "results" / paths.obsid / "events")
    p2 = ObsPaths.of(paths.obsid, tmp_path)
    monkeypatch.setenv("SAS_DIR", str(tmp_path))               # an initialised (stand-in) SAS
    monkeypatch.setenv("SAS_CCFPATH", str(tmp_path))
    fake_task(fakebin, "sasversion", "print('xmmsas_20230412_1735-21.0.0')\n")
    # issue 13, item 10: step 1 ran natively, so there is no ccf.cif/SUM.SAS: a clear error
    with pytest.raises(errors_mod.UsageError, match="run step 1 with --backend sas"):
        run_regions(p2, RegionOptions(), backend="sas")
    (p2.results / "sas").mkdir()
    (p2.results / "sas" / "ccf.cif").write_text("cif")
    (p2.results / "sas" / "0001_0999994001_SCX00000SUM.SAS").write_text("sum")
    ps = sorted(truth["point_sources"], key=lambda p: -sum(p["counts"].values()))[:2]
    # emldetect's output table (SAS documentation): EXT in image pixels, EXT_ML its likelihood;
    # a point source near a cluster may get a small EXT with a low EXT_ML and stays a point source
    rows = [(0, p["ra"], p["dec"], 30.0, 200.0, e, ml) for p, (e, ml) in zip(ps, ((0.0, 0.0), (1.2, 3.0)))] + \
           [(0, truth["cluster"]["ra"], truth["cluster"]["dec"], 500.0, 5000.0, 40.0, 800.0)]
    fake_task(fakebin, "atthkgen", "args = dict(a.split('=', 1) for a in sys.argv[1:]); open(args['atthkset'], 'w').write('att')\n")
    fake_task(fakebin, "evselect", """
        from astropy.io import fits
        import numpy as np
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        d = fits.getdata(args['table'], 'EVENTS')
        # as evselect bins an integer column (seen on a real SAS image, test_evselect_image_grid):
        # (max - min)/bin + 1 pixels, the first starting at min - 0.5
        b = float(args['ximagebinsize'])
        def edges(lo, hi):
            n = int(round((float(hi) - float(lo)) / b)) + 1
            return float(lo) - 0.5 + b * np.arange(n + 1)
        ex, ey = edges(args['ximagemin'], args['ximagemax']), edges(args['yimagemin'], args['yimagemax'])
        img, _, _ = np.histogram2d(d['Y'], d['X'], bins=[ey, ex])
        fits.PrimaryHDU(img.astype('f4')).writeto(args['imageset'])
    """)
    fake_task(fakebin, "eexpmap", """
        from astropy.io import fits
        import numpy as np
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        img = fits.getdata(args['imageset'])
        fits.PrimaryHDU(np.full(img.shape, 20000.0, 'f4')).writeto(args['expimageset'])
    """)
    fake_task(fakebin, "edetect_chain", f"""
        from astropy.io import fits
        import numpy as np
        args = dict(a.split('=', 1) for a in sys.argv[1:])
        assert all(os.path.exists(p) for p in args['imagesets'].split())
        n = len(args['imagesets'].split())
        # as edetect_chain does: one pimin/pimax value per image, else it stops with an error
        if any(len(args[k].split()) != n for k in ('pimin', 'pimax', 'ecf')):
            print('** edetect_chain: error (ParamMismatch), number of pimin/pimax values does not match the images')
            sys.exit(1)
        rows = {rows!r}
        cols = [fits.Column(n, f, array=np.array([r[i] for r in rows])) for i, (n, f) in
                enumerate([('ID_INST', 'I'), ('RA', 'D'), ('DEC', 'D'), ('DET_ML', 'E'), ('SCTS', 'E'),
                           ('EXT', 'E'), ('EXT_ML', 'E')])]
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(args['eml_list'])
    """)
    res = run_regions(p2, RegionOptions(), backend="sas")
    assert len(res["excluded"]) == 2
    got = sorted((round(e["ra"], 5), round(e["dec"], 5)) for e in res["excluded"])
    assert got == sorted((round(p["ra"], 5), round(p["dec"], 5)) for p in ps)
    assert (p2.regions / "epic_images.fits").exists() and (p2.regions / "src.reg").exists()
    assert res["radius_arcmin"] > 1.0
