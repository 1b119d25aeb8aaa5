"""Grouping of spectral channels, as a GROUPING/QUALITY column pair: minimum counts (as
specgroup mincounts), minimum signal-to-noise, or optimal binning (Kaastra & Bleeker 2016)."""
from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

import xmmext.instrument as ins
from xmmext.core.errors import UsageError

__all__ = ["GroupSpec", "DEFAULT_GROUP", "DEFAULT_OVERSAMPLE", "parse_group", "min_width_channels", "group_spectrum", "group_min_counts",
           "group_min_sn", "group_optimal"]


class GroupSpec(NamedTuple):
    """A parsed --group value: kind, its number, and specgroup's oversample (minimum group
    width = resolution FWHM / oversample; None = no width limit)."""
    kind: str
    value: float | None
    oversample: float | None = None

    def text(self) -> str:
        """The grouping in the --group syntax, every part spelled out."""
        if self.kind in ("optimal", "none"):
            return self.kind
        return f"{self.kind}={self.value:g},oversample={'none' if self.oversample is None else f'{self.oversample:g}'}"

    def header_cards(self) -> dict:
        """FITS cards that record the grouping in a grouped spectrum."""
        return {"GRPMETH": (self.kind, "grouping: mincounts, minsn, optimal or none"),
                "GRPVALUE": (-1.0 if self.value is None else float(self.value), "its minimum counts or S/N"),
                "GRPOVRSM": (-1.0 if self.oversample is None else float(self.oversample),
                             "groups >= resolution FWHM / this (-1: no limit)")}


DEFAULT_OVERSAMPLE = 3.0                        # specgroup's oversample, kept unless --group gives another
DEFAULT_GROUP = "mincounts=25,oversample=3"     # what SAS users get from specgroup


def parse_group(text: str) -> GroupSpec:
    """'mincounts=25[,oversample=3]' | 'minsn=5[,oversample=3]' | 'optimal' | 'none'. Parts
    not given keep the default (oversample 3); 'oversample=none' lifts the width limit."""
    t = (text or "").strip().lower()
    if t in ("optimal", "opt"):
        return GroupSpec("optimal", None)
    if t == "none":
        return GroupSpec("none", None)
    parts = [p for p in re.split(r"[,\s]+", t) if p]
    values = {}
    for part in parts:
        kind, _, val = part.partition("=")
        if kind == "oversample" and val == "none" and kind not in values:
            values[kind] = None
            continue
        try:
            v = float(val)
        except ValueError:
            v = float("nan")
        if kind not in ("mincounts", "minsn", "oversample") or kind in values or not (math.isfinite(v) and v > 0):
            values = {}
            break
        values[kind] = v
    main = [k for k in values if k != "oversample"]
    if len(main) == 1:
        return GroupSpec(main[0], values[main[0]], values.get("oversample", DEFAULT_OVERSAMPLE))
    raise UsageError("--group must be mincounts=N or minsn=S (each optionally with ,oversample=F or "
                     ",oversample=none), "
                     f"optimal or none, got {text!r}")


def min_width_channels(cam: ins.Camera, oversample: float | None, n_channels: int) -> np.ndarray | None:
    """Per channel, the narrowest group specgroup's oversample allows (FWHM/oversample, >= 1)."""
    if not oversample:
        return None
    emid = (np.arange(n_channels) + 0.5) * ins.CHANNEL_EV / 1000.0
    fwhm_ch = cam.fwhm_kev(np.maximum(emid, 0.05)) * 1000.0 / ins.CHANNEL_EV
    return np.maximum(np.floor(fwhm_ch / oversample), 1).astype(int)


# ------------------------------------------------------------------------------
def group_spectrum(counts: np.ndarray, cam: ins.Camera, spec: GroupSpec, bkg: np.ndarray | None = None,
                   scale: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """GROUPING/QUALITY of a source spectrum as step 3 writes it: ``spec`` applied between
    0.3 keV and 10 keV (or the camera's top energy), channels outside marked bad; ``bkg``
    and ``scale`` (background counts, area ratio) are used by minsn only."""
    first = int(0.3 * 1000 / ins.CHANNEL_EV)
    last = int(min(10.0, cam.max_pi / 1000.0) * 1000 / ins.CHANNEL_EV) - 1
    width = min_width_channels(cam, spec.oversample, cam.n_channels)
    if spec.kind == "mincounts":
        return group_min_counts(counts, spec.value, first, last, width)
    if spec.kind == "minsn":
        return group_min_sn(counts, spec.value, bkg, scale, first, last, width)
    if spec.kind == "optimal":
        return group_optimal(counts, cam, first, last)
    return np.ones(cam.n_channels, np.int16), np.zeros(cam.n_channels, np.int16)


def group_min_counts(counts: np.ndarray, n: float, first: int = 0, last: int | None = None,
                     min_width: np.ndarray | None = None):
    """GROUPING/QUALITY: successive groups of >= n counts between channels first..last, each
    at least ``min_width[start]`` channels wide (specgroup oversample); a short last group is
    added to the previous one (specgroup lastbin=addtogroup)."""
    return _group_until(counts, lambda c, b: c >= n, first, last, min_width=min_width)


def group_min_sn(counts: np.ndarray, sn: float, bkg: np.ndarray | None = None, scale: float = 0.0,
                 first: int = 0, last: int | None = None, min_width: np.ndarray | None = None):
    """Groups with background-subtracted signal-to-noise >= sn."""
    b = np.zeros_like(counts) if bkg is None else bkg

    def ok(c, bb):
        net = c - scale * bb
        return net > 0 and net / math.sqrt(c + scale * scale * bb) >= sn
    return _group_until(counts, ok, first, last, b, min_width)


def _group_until(counts, done, first, last, bkg=None, min_width=None):
    nch = len(counts)
    last = nch - 1 if last is None else last
    grouping = np.ones(nch, np.int16)
    quality = np.zeros(nch, np.int16)
    quality[:first] = 1
    quality[last + 1:] = 1
    starts = []
    c = bb = 0.0
    start = first
    for i in range(first, last + 1):
        c += counts[i]
        bb += 0 if bkg is None else bkg[i]
        if done(c, bb) and (min_width is None or i - start + 1 >= min_width[start]):
            starts.append((start, i))
            start, c, bb = i + 1, 0.0, 0.0
    if start <= last:
        if starts:
            s0, _ = starts.pop()
            starts.append((s0, last))
        else:
            starts.append((start, last))
    for s, e in starts:
        grouping[s] = 1
        grouping[s + 1:e + 1] = -1
    return grouping, quality


def group_optimal(counts: np.ndarray, cam: ins.Camera, first: int = 0, last: int | None = None,
                  min_counts: float = 1.0):
    """Optimal binning of Kaastra & Bleeker (2016, A&A 587, A151, sect. 5.3).

    The bin width in units of the resolution FWHM is 1 when x <= 2.119, else
    (0.08 + 7.0/x + 1.8/x^2) / (1 + 5.9/x), with x = ln[N_r (1 + 0.2 ln R)], N_r the
    number of resolution elements in the fitted range and R the counts per resolution
    element around the channel. Groups also hold >= ``min_counts`` counts.
    """
    nch = len(counts)
    last = nch - 1 if last is None else last
    emid = (np.arange(nch) + 0.5) * ins.CHANNEL_EV / 1000.0
    fwhm_ch = cam.fwhm_kev(np.maximum(emid, 0.05)) * 1000.0 / ins.CHANNEL_EV
    rng = slice(first, last + 1)
    n_res = float(np.sum(1.0 / fwhm_ch[rng]))
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    grouping = np.ones(nch, np.int16)
    quality = np.zeros(nch, np.int16)
    quality[:first] = 1
    quality[last + 1:] = 1
    i = first
    while i <= last:
        half = max(int(round(fwhm_ch[i] / 2)), 1)
        lo, hi = max(i - half, 0), min(i + half + 1, nch)
        r_counts = max(cum[hi] - cum[lo], 1.0)
        x = math.log(n_res * (1 + 0.2 * math.log(r_counts)))
        ratio = 1.0 if x <= 2.119 else (0.08 + 7.0 / x + 1.8 / x ** 2) / (1 + 5.9 / x)
        width = max(int(ratio * fwhm_ch[i]), 1)
        j = min(i + width - 1, last)
        while j < last and cum[j + 1] - cum[i] < min_counts:
            j += 1
        grouping[i] = 1
        grouping[i + 1:j + 1] = -1
        i = j + 1
    return grouping, quality
