"""Stand-in SAS tasks for the whole pipeline (tests only).

Each stand-in is a small Python program put on PATH under the task's name. They behave as
the SAS documentation describes where the pipeline relies on it, not as our code assumes:
  * sasversion prints the release tag in the SAS <= 21 or SAS >= 22 form;
  * odfingest reads ``odfdir`` only with ``withodfdir=yes`` (else SAS_ODF);
  * espfilt writes ``<inst><exp>-gti.fits`` from SAS 21 on (energy-suffixed names with
    ``withlongnames=yes`` on SAS 20);
  * evselect selects events with the expression (regions, GTI(...), PI ranges) and bins
    images as evselect does: (max - min)/bin + 1 pixels from ``min - 0.5``;
  * edetect_chain stops with an error when pimin/pimax/ecf do not have one value per image,
    and writes emldetect's columns (EXT, EXT_ML, ID_INST 0 summary rows);
  * tasks that read calibration (backscale, rmfgen, arfgen, eexpmap, atthkgen,
    edetect_chain) stop with an error when SAS_CCF does not name an existing ccf.cif;
  * rmfgen/arfgen write OGIP responses (made with the native instrument model: the
    numbers are not SAS's, the file layout and the header links are).
Every call is logged with its arguments to ``calls.txt`` in the stand-in folder.
"""
from __future__ import annotations

import stat
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEADER = f"""#!{sys.executable}
import os, sys, json, shutil
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from astropy.io import fits
ARGS = dict(a.split('=', 1) for a in sys.argv[1:] if '=' in a)
HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'calls.txt'), 'a') as _f:
    _f.write(' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]) + '\\n')

def fail(code, text):
    print(f"** {{os.path.basename(sys.argv[0])}}: error ({{code}}), {{text}}")
    sys.exit(1)

def need_ccf():
    ccf = os.environ.get('SAS_CCF', '')
    if not os.path.isfile(ccf):
        fail('NoCcf', f'SAS_CCF={{ccf}} is not a CIF')

def load_gti(name):
    d = fits.getdata(name, 1)
    return np.column_stack([d['START'], d['STOP']])

def selected(table, expr):
    from xmmext.events.selection import compile_expression
    ev = fits.getdata(table, 'EVENTS')
    cols = {{c: np.asarray(ev[c]) for c in ev.columns.names}}
    return ev, compile_expression(expr, load_gti).evaluate(cols)
"""

TASKS = {
    "cifbuild": "open('ccf.cif', 'w').write('cif')\n",
    "odfingest": """
        odf = ARGS['odfdir'] if ARGS.get('withodfdir') == 'yes' else os.environ.get('SAS_ODF', '')
        if not os.path.isdir(odf):
            fail('NoOdf', f'no ODF in {odf!r}')
        open('0001_' + os.environ['XMMEXT_TEST_OBSID'] + '_SCX00000SUM.SAS', 'w').write('sum')
    """,
    "emchain": """
        for cam, code in (('mos1', 'M1S001'), ('mos2', 'M2S002')):      # the cameras the ODF holds
            src = os.path.join(os.environ['XMMEXT_TEST_EVENTS'], cam + '_evt.fits')
            if os.path.exists(src):
                shutil.copy(src, 'P' + os.environ['XMMEXT_TEST_OBSID'] + code + 'MIEVLI0000.FIT')
    """,
    "epchain": """
        oot = ARGS.get('withoutoftime') == 'yes'
        if not os.path.exists(os.path.join(os.environ['XMMEXT_TEST_EVENTS'], 'pn_evt.fits')):
            fail('NoExposure', 'no pn exposure in this ODF')
        shutil.copy(os.path.join(os.environ['XMMEXT_TEST_EVENTS'], 'pn_evt.fits'),
                    'P' + os.environ['XMMEXT_TEST_OBSID'] + 'PNS003' + ('OOEVLI0000.FIT' if oot else 'PIEVLI0000.FIT'))
    """,
    "espfilt": """
        with fits.open(ARGS['eventfile']) as h:
            t0, t1 = h['EVENTS'].header['TSTART'], h['EVENTS'].header['TSTOP']
            inst = {'EMOS1': 'mos1', 'EMOS2': 'mos2', 'EPN': 'pn'}[h['EVENTS'].header['INSTRUME'].strip()]
        exp = {'mos1': 'S001', 'mos2': 'S002', 'pn': 'S003'}[inst]
        g = fits.BinTableHDU.from_columns([fits.Column('START', 'D', array=np.array([t0])),
                                           fits.Column('STOP', 'D', array=np.array([t1]))], name='STDGTI')
        name = (f"{inst}{exp}-gti-{ARGS['elow']}-{ARGS['ehigh']}.fits" if ARGS.get('withlongnames') == 'yes'
                else f"{inst}{exp}-gti.fits")
        fits.HDUList([fits.PrimaryHDU(), g]).writeto(name)
    """,
    "atthkgen": "need_ccf(); open(ARGS['atthkset'], 'w').write('att')\n",
    "emanom": """
        with fits.open(ARGS['eventfile'], mode='update') as h:        # writekeys=yes: into the list
            for n in range(1, 8):
                h[0].header[f'ANOMFL{n}'] = 'G'
    """,
    "evselect": """
        ev, keep = selected(ARGS['table'], ARGS.get('expression', 'TIME > 0'))
        if ARGS.get('withfilteredset') == 'yes':
            with fits.open(ARGS['table']) as h:
                h['EVENTS'].data = h['EVENTS'].data[keep]
                h.writeto(ARGS['filteredset'])
        elif ARGS.get('withspectrumset') == 'yes':
            nch = int(ARGS['specchannelmax']) // 5 + 1
            ch = np.clip(np.asarray(ev['PI'][keep]) // 5, 0, nch - 1)
            spec = fits.BinTableHDU.from_columns([fits.Column('CHANNEL', 'J', array=np.arange(nch)),
                                                  fits.Column('COUNTS', 'J', array=np.bincount(ch, minlength=nch))],
                                                 name='SPECTRUM')
            h0 = fits.getheader(ARGS['table'], 'EVENTS')
            for k in ('TELESCOP', 'INSTRUME', 'FILTER', 'EXPOSURE', 'LIVETIME'):
                if k in h0:
                    spec.header[k] = h0[k]
            spec.header['EXPOSURE'] = h0.get('LIVETIME', h0.get('EXPOSURE'))
            # the region's area for backscale (a Monte Carlo over the expression's own region terms)
            rng = np.random.default_rng(1)
            x = rng.uniform(0, 51840, 400000); y = rng.uniform(0, 51840, 400000)
            from xmmext.events.selection import compile_expression
            reg = ARGS['expression'].split('&&', 3)[-1]
            inside = compile_expression(reg).evaluate({'X': x, 'Y': y})
            spec.header['REGAREA'] = float(inside.mean() * 51840.0 ** 2)
            spec.header['HDUCLASS'], spec.header['HDUCLAS1'], spec.header['CHANTYPE'] = 'OGIP', 'SPECTRUM', 'PI'
            spec.header['DETCHANS'], spec.header['POISSERR'] = nch, True
            fits.HDUList([fits.PrimaryHDU(), spec]).writeto(ARGS['spectrumset'])
        elif ARGS.get('withimageset') == 'yes':
            if ARGS['xcolumn'] == 'X':
                b = float(ARGS['ximagebinsize'])
                def edges(lo, hi):
                    n = int(round((float(hi) - float(lo)) / b)) + 1
                    return float(lo) - 0.5 + b * np.arange(n + 1)
                img, _, _ = np.histogram2d(ev['Y'][keep], ev['X'][keep],
                                           bins=[edges(ARGS['yimagemin'], ARGS['yimagemax']),
                                                 edges(ARGS['ximagemin'], ARGS['ximagemax'])])
            else:
                img = np.ones((64, 64))
            fits.PrimaryHDU(img.astype('f4')).writeto(ARGS['imageset'])
        elif ARGS.get('withrateset') == 'yes':
            shutil.copy(ARGS['table'], ARGS['rateset'])
    """,
    "eexpmap": """
        need_ccf()
        img = fits.getdata(ARGS['imageset'])
        fits.PrimaryHDU(np.full(img.shape, 20000.0, 'f4')).writeto(ARGS['expimageset'])
    """,
    "edetect_chain": """
        need_ccf()
        n = len(ARGS['imagesets'].split())
        if any(len(ARGS[k].split()) != n for k in ('pimin', 'pimax', 'ecf')):
            fail('ParamMismatch', 'number of pimin/pimax values does not match the number of images')
        cols = [fits.Column(c, f, array=np.zeros(0)) for c, f in
                (('ID_INST', 'I'), ('RA', 'D'), ('DEC', 'D'), ('DET_ML', 'E'), ('SCTS', 'E'), ('EXT', 'E'), ('EXT_ML', 'E'))]
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(ARGS['eml_list'])
    """,
    "backscale": """
        need_ccf()
        with fits.open(ARGS['spectrumset'], mode='update') as h:
            h['SPECTRUM'].header['BACKSCAL'] = h['SPECTRUM'].header['REGAREA']
    """,
    "rmfgen": """
        need_ccf()
        from xmmext import instrument as ins
        import xmmext.spectra.responses as responses
        inst = fits.getheader(ARGS['spectrumset'], 'SPECTRUM')['INSTRUME'].strip()
        responses.rmf_hdulist(ins.camera(inst)).writeto(ARGS['rmfset'])
    """,
    "arfgen": """
        need_ccf()
        from xmmext import instrument as ins
        import xmmext.spectra.responses as responses
        inst = fits.getheader(ARGS['spectrumset'], 'SPECTRUM')['INSTRUME'].strip()
        cam = ins.camera(inst)
        responses.arf_hdulist(cam, responses.point_source_arf(cam, 2.0)).writeto(ARGS['arfset'])
    """,
    "specgroup": """
        from xmmext.spectra.grouping import group_min_counts
        with fits.open(ARGS['spectrumset']) as h:
            spec = h['SPECTRUM']
            grouping, quality = group_min_counts(np.asarray(spec.data['COUNTS']), int(ARGS['mincounts']), 60,
                                                 len(spec.data) - 1)
            cols = spec.columns + fits.ColDefs([fits.Column('GROUPING', 'I', array=grouping),
                                                fits.Column('QUALITY', 'I', array=quality)])
            out = fits.BinTableHDU.from_columns(cols, header=spec.header, name='SPECTRUM')
            out.header['BACKFILE'] = os.path.basename(ARGS['backgndset'])
            out.header['RESPFILE'] = os.path.basename(ARGS['rmfset'])
            out.header['ANCRFILE'] = os.path.basename(ARGS['arfset'])
            fits.HDUList([h[0].copy(), out]).writeto(ARGS['groupedset'])
    """,
}

VERSIONS = {"21": "sasversion (sasversion-1.3.2) [xmmsas_20230412_1735-21.0.0]",
            "22": "sasversion (sasversion-1.3.2) [22.0.0-a8f2c2afa-20250304]"}


def install(bindir: Path, version: str) -> Path:
    """Write every stand-in into ``bindir``; return the call log's path."""
    bindir.mkdir(parents=True, exist_ok=True)
    tasks = dict(TASKS, sasversion=f"print({VERSIONS[version]!r})\n")
    for name, body in tasks.items():
        exe = bindir / name
        exe.write_text(HEADER + textwrap.dedent(body))
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bindir / "calls.txt"
