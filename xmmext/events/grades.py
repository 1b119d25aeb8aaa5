"""Event grades and flags as the instrument gives them: the share of events by PATTERN
class (X-rays and particles) and the random FLAG bits that stand in for bad pixels and
columns - for the event selection's efficiency (responses) and the simulator alike."""
from __future__ import annotations

import numpy as np

from xmmext.instrument import Camera

__all__ = ["XRAY_PATTERN_FRACTIONS", "PARTICLE_PATTERN_FRACTIONS", "RANDOM_FLAGS", "BORDER_FLAG", "draw_patterns",
           "draw_random_flags"]


# Share of events by PATTERN class: (singles, the rest of the standard range, outside it).
# X-rays: UHB pattern distributions (pn singles+doubles ~96%, MOS 0-12 ~97%); particles
# leave more multi-pixel events.
XRAY_PATTERN_FRACTIONS = {"pn": (0.70, 0.26, 0.04), "mos": (0.65, 0.32, 0.03)}
PARTICLE_PATTERN_FRACTIONS = {"pn": (0.45, 0.25, 0.30), "mos": (0.40, 0.30, 0.30)}
# Random flags standing in for bad pixels: next to a bad pixel (0x4, not in the #XMMEA
# masks) and in a bad column (0x80000, in both masks). Border pixels get 0x1.
RANDOM_FLAGS = ((0x4, 0.010), (0x80000, 0.012))
BORDER_FLAG = 0x1


def draw_patterns(rng: np.random.Generator, cam: Camera, n: int, particle: bool = False) -> np.ndarray:
    """PATTERN values for ``n`` events (X-ray or particle grade distribution)."""
    kind = "pn" if cam.name == "pn" else "mos"
    singles, rest, _ = (PARTICLE_PATTERN_FRACTIONS if particle else XRAY_PATTERN_FRACTIONS)[kind]
    top_ok, top = (4, 12) if kind == "pn" else (12, 31)
    u = rng.uniform(0, 1, n)
    pat = np.zeros(n, np.uint8)
    mid = (u >= singles) & (u < singles + rest)
    pat[mid] = rng.integers(1, top_ok + 1, int(mid.sum()))
    hi = u >= singles + rest
    pat[hi] = rng.integers(top_ok + 1, top + 1, int(hi.sum()))
    return pat


def draw_random_flags(rng: np.random.Generator, n: int) -> np.ndarray:
    flag = np.zeros(n, np.int32)
    u = rng.uniform(0, 1, n)
    lo = 0.0
    for bit, frac in RANDOM_FLAGS:
        flag[(u >= lo) & (u < lo + frac)] |= bit
        lo += frac
    return flag
