"""Region files of any shape a user draws in ds9 (issue 26): ellipses, boxes, polygons,
rotated, in physical, image or fk5 coordinates, with exclusions."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from xmmext.core.errors import UsageError
from xmmext.events.footprint import geometry_from_events
from xmmext.sky.extraction_region import read_ds9
from xmmext.steps import SpectraOptions, run_spectra

pytestmark = pytest.mark.slow            # spectra of a simulated observation

HEAD = "# Region file format: DS9 version 4.1\n"


def _spectra(paths, tmp_path, name, text, cameras=("pn",)):
    reg = tmp_path / f"{name}.reg"
    reg.write_text(HEAD + text)
    out = tmp_path / name
    spec = run_spectra(paths, SpectraOptions(src_reg=str(reg), cameras=cameras, output=str(out)))
    with fits.open(out / "pn_src.pha") as h:
        return reg, spec, h["SPECTRUM"].data["COUNTS"].astype(int), float(h["SPECTRUM"].header["BACKSCAL"])


def _exposed_area(paths, inside, x0, y0, half, step=5.0):
    """A second count of the exposed area: the shape's own formula (not the regions
    package) on a 4x finer grid than BACKSCAL's, through the camera's CCD footprint."""
    geo = geometry_from_events(paths.clean_events("pn"), "pn")
    xs = np.arange(x0 - half + step / 2, x0 + half, step)
    X, Y = np.meshgrid(xs, xs - x0 + y0)
    m = inside(X, Y)
    return float(np.count_nonzero(geo.exposed(X[m], Y[m])) * step * step)


def test_ellipse_and_polygon_backscal_is_their_exposed_area(processed_obs, tmp_path):
    wd, truth, paths, _ = processed_obs
    src = read_ds9(paths.regions / "src.reg")
    x0, y0 = src.x, src.y
    a, b, ang = 2400.0, 1300.0, 30.0
    _, spec, counts, bs = _spectra(paths, tmp_path, "ellipse",
                                   f"physical\nellipse({x0:.2f},{y0:.2f},{a},{b},{ang})\n")
    t = np.deg2rad(ang)

    def in_ellipse(X, Y):
        u = (X - x0) * np.cos(t) + (Y - y0) * np.sin(t)
        v = -(X - x0) * np.sin(t) + (Y - y0) * np.cos(t)
        return (u / a) ** 2 + (v / b) ** 2 <= 1
    assert bs == pytest.approx(_exposed_area(paths, in_ellipse, x0, y0, a), rel=0.01)
    assert bs < np.pi * a * b * 1.001 and counts.sum() > 1000
    verts = [(x0 - 2000, y0 - 1500), (x0 + 2500, y0 - 1000), (x0 + 1500, y0 + 2000), (x0 - 1800, y0 + 1200)]
    _, _, counts_p, bs_p = _spectra(paths, tmp_path, "polygon",
                                    "physical\npolygon(" + ",".join(f"{x:.1f},{y:.1f}" for x, y in verts) + ")\n")
    from matplotlib.path import Path as MplPath
    poly = MplPath(verts)

    def in_poly(X, Y):
        return poly.contains_points(np.column_stack([X.ravel(), Y.ravel()])).reshape(X.shape)
    assert bs_p == pytest.approx(_exposed_area(paths, in_poly, x0, y0, 2600), rel=0.01)


def test_image_circle_gives_the_spectrum_of_its_fk5_twin(processed_obs, tmp_path):
    """The same circle in image pixels of regions/epic_images.fits (converted here with that
    file's own WCS) and in fk5: the same events, the same BACKSCAL."""
    from astropy.wcs import WCS
    wd, truth, paths, _ = processed_obs
    ra, dec = truth["cluster"]["ra"], truth["cluster"]["dec"]
    radius_arcsec = 150.0
    w = WCS(fits.getheader(paths.regions / "epic_images.fits", 1))
    px, py = w.all_world2pix([[ra, dec]], 1)[0]
    pix_arcsec = abs(w.wcs.cdelt[0]) * 3600
    _, _, c_fk5, bs_fk5 = _spectra(paths, tmp_path, "fk5", f'fk5\ncircle({ra:.7f},{dec:.7f},{radius_arcsec}")\n')
    _, _, c_img, bs_img = _spectra(paths, tmp_path, "image",
                                   f"image\ncircle({px:.4f},{py:.4f},{radius_arcsec / pix_arcsec:.5f})\n")
    assert bs_img == pytest.approx(bs_fk5, rel=1e-3)
    assert abs(int(c_img.sum()) - int(c_fk5.sum())) <= 0.002 * c_fk5.sum()


def test_rotated_box_with_an_excluded_ellipse_and_galactic_frame(processed_obs, tmp_path):
    wd, truth, paths, _ = processed_obs
    src = read_ds9(paths.regions / "src.reg")
    x0, y0 = src.x, src.y
    reg, _, counts, bs = _spectra(paths, tmp_path, "box",
                                  f"physical\nbox({x0:.1f},{y0:.1f},3000,2000,20)\n-ellipse({x0:.1f},{y0:.1f},300,200,0)\n")
    r = read_ds9(reg)
    assert not r.contains([x0], [y0])[0] and r.contains([x0 + 1000], [y0])[0]
    # the excluded ellipse is cut out exactly: a point beside it (not in it) stays in
    assert r.contains([x0], [y0 + 250])[0] and not r.contains([x0 + 250], [y0])[0]
    assert "-ellipse(" in r.ds9_physical() and "!((X,Y) IN ellipse(" in r.evselect_expression()
    assert bs < 3000 * 2000
    from astropy.coordinates import SkyCoord
    g = SkyCoord(truth["cluster"]["ra"], truth["cluster"]["dec"], unit="deg").galactic
    _, _, c_gal, _ = _spectra(paths, tmp_path, "galactic", f'galactic\ncircle({g.l.deg:.7f},{g.b.deg:.7f},120")\n')
    _, _, c_fk5, _ = _spectra(paths, tmp_path, "fk5b",
                              f'fk5\ncircle({truth["cluster"]["ra"]:.7f},{truth["cluster"]["dec"]:.7f},120")\n')
    assert abs(int(c_gal.sum()) - int(c_fk5.sum())) <= 0.002 * c_fk5.sum()


def test_written_regions_read_back_as_they_were(tmp_path):
    """Our own ds9 files of a shape (physical and fk5) describe the same pixels."""
    from xmmext.sky.extraction_region import HEADER
    f = tmp_path / "e.reg"
    f.write_text(HEADER + "physical\nellipse(25000,25500,1200,600,40)\n-circle(25300,25500,100)\n")
    r = read_ds9(f, 150.5, 2.2)
    phys = tmp_path / "p.reg"
    phys.write_text(r.ds9_physical())
    sky = tmp_path / "s.reg"
    sky.write_text(r.ds9_fk5(150.5, 2.2))
    X, Y = np.meshgrid(np.arange(23500, 26500, 37.0), np.arange(24500, 26500, 37.0))
    want = r.contains(X, Y)
    assert want.sum() > 1000
    assert (read_ds9(phys).contains(X, Y) == want).all()
    assert np.mean(read_ds9(sky, 150.5, 2.2).contains(X, Y) == want) > 0.999
    assert "ellipse" in r.evselect_expression()


def test_a_second_included_shape_or_a_directory_is_refused(tmp_path):
    f = tmp_path / "two.reg"
    f.write_text(HEAD + "physical\ncircle(100,100,10)\nellipse(300,300,10,5,0)\n")
    with pytest.raises(UsageError, match="more than one included shape"):
        read_ds9(f)
    with pytest.raises(UsageError, match="not a regular file"):
        read_ds9(tmp_path)
