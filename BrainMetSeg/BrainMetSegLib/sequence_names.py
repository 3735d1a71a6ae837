"""Which loaded volume is which sequence, from its name or series description.

The Slicer module fills its four input selectors from the scene so that a radiologist who
loads a study rarely has to pick volumes by hand. A wrong guess is worse than no guess (the
network would silently segment the wrong images), so the rules below assign a role only when
the name says it plainly, and leave it empty, with a note saying why, otherwise. Every
selector stays editable.

Rules (applied to the name in lower case, with `_ - . , ; : / ( ) [ ]` read as spaces and a
leading DICOM series number such as "5: " ignored):

1. BrainMetShare names, spelt as its files are (lower case): `t1_pre`, `t1_gd`, `bravo`,
   `flair` (also `Mets_001_flair`, `t1_gd_1`, with or without `.nii.gz`), and the PNG
   release's folder numbers `0` (bravo), `1` (t1_pre), `2` (t1_gd), `3` (flair). They win
   over every other rule. (A series described "BRAVO" or "FLAIR" in capitals is a scanner's
   description and goes through the rules below.)
2. Not an input: labels, masks and outputs (`seg`, `label`, `mask`, `lesion`, `probability`),
   derived images (`sub`/`subtraction`, `mip`, `mpr`, `reformat`, maps, MP2RAGE `inv1`/
   `inv2`/`uni`), and other contrasts (T2 without FLAIR, T2*, SWI, DWI/ADC/trace, DTI,
   perfusion, ASL, TOF/MRA, STIR, PD, localizers and calibration scans).
3. FLAIR: `flair`, `t2f`, `darkfluid`/`dark-fl`, `tirm`, "fluid attenuated" - unless the name
   says T1 (`T1 FLAIR` on GE and `T1 TIRM` on Siemens are T1-weighted inversion-recovery spin
   echoes, so they count as T1 spin echo).
4. T1 3D gradient echo (the `bravo` role): `bravo`, `spgr`/`fspgr`/`efgre3d`, `mprage`/
   `mp-rage`/`tfl3d`, `fl3d`, `vibe`, `tfe`, `lava`, `thrive`; `gre`/`ffe`/`flash`/`fl` only
   together with `3d` (a 2D "GRE" is usually a T2* series).
5. T1 spin echo (`t1_pre`, `t1_gd`): `cube`, `space`, `vista`, `se`, `tse`, `fse`, `frfse`,
   "spin echo", the T1 inversion-recovery names of rule 3; and a plain `T1` with no sequence
   keyword and no `3d` (a 2D T1 series is a spin echo in practice). A `3D T1` with no sequence
   keyword and BraTS-style `t1n`/`t1c`/`t1ce` may be either kind: they stay unassigned.
6. Contrast: pre-contrast is `pre`, `pre-contrast`, `native`/`nativ`, `plain`, `nc`, "non
   contrast", "no contrast", "without contrast", `w/o`, `wo`, `ohne KM`, `unenhanced`, `t1n`;
   post-contrast is `post`, `+C`, `C+`, `+Gd`, `gd`, `gad`, `gado`, `gadolinium`, `contrast`,
   `CE`, `enhanced`, `KM`/`mit KM`, `t1gd`, `t1c`/`t1ce`. Both at once is contradictory: the
   phase is unknown. BRAVO is post-contrast; t1_pre and t1_gd split on the phase.
7. A series with no (or a contradictory) contrast word is decided by its siblings of the same
   kind: when the others are all marked post-contrast it is the pre-contrast one, when they
   are all marked pre-contrast it is the post-contrast one. Alone, or with several unmarked
   siblings, it stays unassigned (a lone "MPRAGE" may be pre- or post-contrast).
8. A role with exactly one candidate gets it. With several it stays empty, except FLAIR,
   where post-contrast FLAIRs give way to the one FLAIR not marked post-contrast.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .roles import ROLES

GRE = "3D gradient echo"
SPIN_ECHO = "spin echo"
FLAIR = "FLAIR"

PRE = "pre"
POST = "post"

BRAINMETSHARE_NAMES = {
    "t1_pre": "t1_pre", "t1_gd": "t1_gd", "bravo": "bravo", "flair": "flair",
    "0": "bravo", "1": "t1_pre", "2": "t1_gd", "3": "flair",
}
"""BrainMetShare names (NIfTI file stems and PNG folder numbers) and their roles."""

_SEPARATORS = re.compile(r"[_\-.,;:/\\()\[\]{}=|\s]+")
_SERIES_NUMBER = re.compile(r"^\s*\d+\s*:\s*")
_FILE_SUFFIX = re.compile(r"\.(nii\.gz|nii|nrrd|nhdr|mha|mhd|png|dcm)$", re.IGNORECASE)
_BRAINMETSHARE = re.compile(r"^(?:Mets_\d+[_ ])?(t1_pre|t1_gd|bravo|flair|[0-3])(?:_\d+)?$")


def _words(*words: str) -> re.Pattern:
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(words) + r")(?![a-z0-9])")


_NOT_INPUT = _words(r"seg", r"segmentation", r"label\w*", r"mask", r"lesions?", r"probability",
                    r"sub", r"subtract\w*", r"mip", r"minip", r"mpr", r"reformat\w*", r"maps?",
                    r"mapping", r"t1 ?map", r"inv ?[12]", r"uni")
_OTHER_CONTRAST = _words(r"t2(?:w|wi)?", r"t2\s*\*", r"t2star", r"swi", r"swan", r"dwi", r"diffusion",
                         r"adc", r"trace", r"dti", r"b\s?\d{3,4}", r"perf\w*", r"dsc", r"dce", r"asl",
                         r"tof", r"mra", r"mrv", r"stir", r"pd(?:w)?", r"loc(?:alizer)?", r"scout",
                         r"survey", r"3\s?plane", r"calibration", r"cal")
_FLAIR = re.compile(r"flair|darkfluid|dark fl|(?<![a-z0-9])(?:tirm|t2f)(?![a-z0-9])|fluid attenuated")
_T1 = re.compile(r"(?<![a-z0-9])t1(?!\d)")
_THREE_D = _words(r"3d", r"3 d", r"3dt1", r"t1 3d")
_GRE_ALWAYS = _words(r"bravo", r"spgr", r"fspgr", r"irspgr", r"efgre3d", r"mprage", r"mp ?rage", r"tfl3d\w*",
                     r"tfl", r"vibe", r"starvibe", r"tfe", r"lava", r"thrive", r"mp2rage", r"turboflash", r"fl3d")
_GRE_IF_3D = _words(r"gre", r"ffe", r"flash", r"fl")
_SPIN_ECHO = _words(r"cube", r"space", r"vista", r"se", r"tse", r"fse", r"frfse", r"spin echo", r"t1se", r"irfse")
_AMBIGUOUS_T1 = _words(r"t1c", r"t1ce", r"t1n")
_PRE = _words(r"pre ?contrast", r"pre ?gd", r"pre ?gad", r"pre", r"native?", r"plain", r"nc", r"non ?contrast",
              r"no contrast", r"without contrast", r"w ?o contrast", r"w ?o", r"ohne km", r"unenhanced", r"t1n",
              r"t1pre")
_POST = re.compile(r"\+\s*(?:c|gd|gad|contrast|km)(?![a-z0-9])|(?<![a-z0-9])(?:c|gd)\s*\+|\+$|"
                   r"(?<![a-z0-9])(?:post ?contrast|post ?gd|post|gd|gad|gado\w*|contrast|ce|enhanced|km|mit km|t1 ?gd|t1ce|t1c)(?![a-z0-9])")


@dataclass(frozen=True)
class SeriesClass:
    """What one name says: its kind (GRE, SPIN_ECHO, FLAIR or None), its contrast phase (PRE,
    POST or None when unstated or contradictory), a role fixed by the name alone (BrainMetShare
    names), and the reason, shown to the user when a role stays empty."""

    name: str
    kind: Optional[str]
    contrast: Optional[str]
    reason: str
    exact_role: Optional[str] = None


@dataclass
class Assignment:
    """Indices into the list of names by role (None: not assigned) and, for each empty role,
    why (no candidate, or which candidates competed)."""

    roles: Dict[str, Optional[int]]
    notes: Dict[str, str] = field(default_factory=dict)


def normalise(name: str) -> str:
    """Lower case, separators as single spaces, no file suffix and no DICOM series number."""
    text = _FILE_SUFFIX.sub("", name.strip())
    if not re.fullmatch(r"\s*\d+\s*", text):
        text = _SERIES_NUMBER.sub("", text)
    return _SEPARATORS.sub(" ", text.lower().replace("+", " +")).strip()


def _contrast(text: str) -> Optional[str]:
    """PRE, POST or None; pre-contrast phrases are removed before looking for post-contrast words
    because "without contrast" contains "contrast"."""
    pre = bool(_PRE.search(text))
    post = bool(_POST.search(_PRE.sub(" ", text)))
    if pre and post:
        return None
    return PRE if pre else POST if post else None


def classify_series(name: str) -> SeriesClass:
    """Apply rules 1-6 of the module docstring to one name."""
    text = normalise(name)
    exact = _BRAINMETSHARE.match(_FILE_SUFFIX.sub("", name.strip()))
    if exact:
        role = BRAINMETSHARE_NAMES[exact.group(1)]
        kind = {"bravo": GRE, "flair": FLAIR}.get(role, SPIN_ECHO)
        contrast = None if role == "flair" else PRE if role == "t1_pre" else POST
        return SeriesClass(name, kind, contrast, f"BrainMetShare name for {role}", role)
    if not text:
        return SeriesClass(name, None, None, "empty name")
    if _NOT_INPUT.search(text):
        return SeriesClass(name, None, None, "a label, mask, output or derived image")
    contrast = _contrast(text)
    t1 = bool(_T1.search(text))
    if _FLAIR.search(text) and not t1:
        return SeriesClass(name, FLAIR, contrast, "FLAIR")
    if _OTHER_CONTRAST.search(text) and not t1:
        return SeriesClass(name, None, None, "another contrast (T2, diffusion, perfusion, ...)")
    gre = bool(_GRE_ALWAYS.search(text)) or (bool(_GRE_IF_3D.search(text)) and bool(_THREE_D.search(text)))
    spin_echo = bool(_SPIN_ECHO.search(text)) or (t1 and bool(_FLAIR.search(text)))
    if gre and spin_echo:
        return SeriesClass(name, None, None, "names both a gradient echo and a spin echo")
    if gre:
        return SeriesClass(name, GRE, contrast, "T1 3D gradient echo")
    if spin_echo:
        return SeriesClass(name, SPIN_ECHO, contrast, "T1 spin echo")
    if _AMBIGUOUS_T1.search(text):
        return SeriesClass(name, None, contrast, "T1 of unknown kind (spin echo or gradient echo)")
    if t1 and _THREE_D.search(text):
        return SeriesClass(name, None, contrast, "3D T1 of unknown kind (spin echo or gradient echo)")
    if t1:
        return SeriesClass(name, SPIN_ECHO, contrast, "2D T1 (spin echo)")
    return SeriesClass(name, None, contrast, "no sequence keyword")


def _resolve_unmarked(classes: List[SeriesClass], kind: str) -> Dict[int, Optional[str]]:
    """Rule 7: the contrast phase of each series of `kind`, an unmarked one decided by siblings."""
    members = [i for i, c in enumerate(classes) if c.kind == kind and c.exact_role is None]
    phases = {i: classes[i].contrast for i in members}
    unmarked = [i for i in members if phases[i] is None]
    marked = {phases[i] for i in members if phases[i] is not None}
    if len(unmarked) == 1 and len(marked) == 1:
        phases[unmarked[0]] = PRE if marked == {POST} else POST
    return phases


def _role_candidates(classes: List[SeriesClass]) -> Dict[str, List[int]]:
    candidates: Dict[str, List[int]] = {role: [] for role in ROLES}
    for i, c in enumerate(classes):
        if c.exact_role is not None:
            candidates[c.exact_role].append(i)
    if all(candidates.values()):
        return candidates
    exact = {role for role, found in candidates.items() if found}
    gre = _resolve_unmarked(classes, GRE)
    spin_echo = _resolve_unmarked(classes, SPIN_ECHO)
    pattern: Dict[str, List[int]] = {role: [] for role in ROLES}
    pattern["bravo"] = [i for i, phase in gre.items() if phase == POST]
    pattern["t1_pre"] = [i for i, phase in spin_echo.items() if phase == PRE]
    pattern["t1_gd"] = [i for i, phase in spin_echo.items() if phase == POST]
    flairs = [i for i, c in enumerate(classes) if c.kind == FLAIR and c.exact_role is None]
    not_post = [i for i in flairs if classes[i].contrast != POST]
    pattern["flair"] = not_post if len(flairs) > 1 and len(not_post) == 1 else flairs
    for role in ROLES:
        if role not in exact:
            candidates[role] = pattern[role]
    return candidates


def assign_roles(names: Sequence[str]) -> Assignment:
    """Assign each role to at most one name (rules 7 and 8), never one name to two roles."""
    classes = [classify_series(name) for name in names]
    candidates = _role_candidates(classes)
    assignment = Assignment({role: None for role in ROLES})
    for role in ROLES:
        found = candidates[role]
        if len(found) == 1:
            assignment.roles[role] = found[0]
        elif found:
            listed = ", ".join(repr(names[i]) for i in found)
            assignment.notes[role] = f"{len(found)} candidates ({listed}); choose one"
        else:
            assignment.notes[role] = "no volume whose name identifies it; choose one"
    return assignment
