"""Sequence roles: the one place that fixes their names and their channel order."""
from __future__ import annotations

ROLES = ("t1_pre", "t1_gd", "bravo", "flair")
"""Input sequences in channel order: T1 spin echo pre-contrast, T1 spin echo post-Gd,
T1 3D gradient echo post-Gd (the reference geometry), FLAIR."""

LABEL_ROLE = "seg"
REFERENCE_ROLE = "bravo"

ROLE_TITLES = {
    "t1_pre": "T1 pre-contrast (spin echo)",
    "t1_gd": "T1 post-Gd (spin echo: CUBE/SPACE/VISTA)",
    "bravo": "T1 post-Gd 3D gradient echo (BRAVO/MPRAGE/TFE)",
    "flair": "FLAIR",
}
