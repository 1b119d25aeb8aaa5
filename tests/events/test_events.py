"""The event-list reader: simulated, PPS-named/gzipped files, and bad input."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from astropy.io import fits

from conftest import DEMO_OBSID
from xmmext.core.errors import DataError, UsageError
from xmmext.events.reader import camera_of_file, choose_exposure, find_event_files, read_events
from xmmext.core.paths import ObsPaths


def test_reads_simulated_lists(short_obs):
    wd, truth = short_obs
    found = find_event_files(ObsPaths.of("0999990201", wd))
    assert sorted(found) == ["mos1", "mos2", "pn"]
    ev = read_events(found["pn"][0], columns=["TIME", "PI"])
    assert ev.camera == "pn" and set(ev.columns) == {"TIME", "PI"}
    assert ev.n == sum(truth["counts"]["pn"].values())
    assert sorted(ev.gtis) == list(range(1, 13))


def test_pps_names_and_gzip(short_obs, tmp_path):
    wd, _ = short_obs
    src = wd / "data/0999990201/event/mos2_evt.fits"
    dest = tmp_path / "P0999990201M2S002MIEVLI0000.FIT.gz"
    with open(src, "rb") as fi, gzip.open(dest, "wb") as fo:
        shutil.copyfileobj(fi, fo)
    assert camera_of_file(dest) == "mos2"
    assert camera_of_file(tmp_path / "P0999990201PNS003PIEVLI0000.FTZ") == "pn"
    assert camera_of_file(tmp_path / "0999990201_EMOS1_S001_ImagingEvts.ds") == "mos1"
    a = read_events(src)
    b = read_events(dest)
    assert all(np.array_equal(a.columns[k], b.columns[k]) for k in a.columns)


def test_longest_exposure_is_chosen(short_obs, tmp_path):
    wd, _ = short_obs
    src = wd / "data/0999990201/event/pn_evt.fits"
    long_f = tmp_path / "P0999990201PNS003PIEVLI0000.FIT"
    short_f = tmp_path / "P0999990201PNU002PIEVLI0000.FIT"
    shutil.copy(src, long_f)
    with fits.open(src) as h:
        h["EVENTS"].header["TSTOP"] = h["EVENTS"].header["TSTART"] + 100
        h.writeto(short_f)
    chosen, why = choose_exposure([short_f, long_f])
    assert chosen == long_f and "longest of 2" in why and short_f.name in why


def test_missing_folder_corrupt_and_missing_column(tmp_path, short_obs):
    with pytest.raises(UsageError, match="no event folder"):
        find_event_files(ObsPaths.of(DEMO_OBSID, tmp_path))
    bad = tmp_path / "pn_evt.fits"
    bad.write_bytes(b"SIMPLE  = this is not fits" * 10)
    with pytest.raises(UsageError, match="not a readable FITS"):
        read_events(bad)
    wd, _ = short_obs
    with fits.open(wd / "data/0999990201/event/mos1_evt.fits") as h:
        ev = h["EVENTS"]
        cols = [c for c in ev.columns if c.name != "PI"]
        new = fits.BinTableHDU.from_columns(cols, header=ev.header, name="EVENTS")
        fits.HDUList([h[0].copy(), new]).writeto(tmp_path / "nopi.fits")
    with pytest.raises(UsageError, match="no PI column") as exc:
        read_events(tmp_path / "nopi.fits")
    assert "nopi.fits" in exc.value.one_line()
    with fits.open(wd / "data/0999990201/event/mos1_evt.fits") as h:
        ev = h["EVENTS"]
        empty = fits.BinTableHDU(data=ev.data[:0], header=ev.header, name="EVENTS")
        fits.HDUList([h[0].copy(), empty]).writeto(tmp_path / "empty.fits")
    with pytest.raises(DataError):
        read_events(tmp_path / "empty.fits")


def test_validation_of_obsid_and_name():
    from xmmext.core.paths import validate_name, validate_obsid
    for bad in ("12345", "../0999990101", "0999990101;rm", "099999010a", " 0999990101"):
        with pytest.raises(UsageError):
            validate_obsid(bad)
    for bad in ("a b", "../x", "x;y", "'q'", "", "a" * 65, ".."):
        with pytest.raises(UsageError):
            validate_name(bad)
    assert validate_name("Abell_1795+v2.0") == "Abell_1795+v2.0"
