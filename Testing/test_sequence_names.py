"""Sequence auto-assignment: real-world-style series names, one by one and as whole studies."""
from __future__ import annotations

import pytest

from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.sequence_names import FLAIR, GRE, POST, PRE, SPIN_ECHO, assign_roles, classify_series, normalise

# (name, kind, contrast phase): what a name alone says. Kind None = never an input candidate.
SERIES = [
    # BrainMetShare files and PNG folders
    ("t1_pre", SPIN_ECHO, PRE),
    ("t1_gd", SPIN_ECHO, POST),
    ("bravo", GRE, POST),
    ("flair", FLAIR, None),
    ("bravo.nii.gz", GRE, POST),
    ("Mets_001_t1_gd", SPIN_ECHO, POST),
    ("t1_gd_1", SPIN_ECHO, POST),
    ("0", GRE, POST),
    ("1", SPIN_ECHO, PRE),
    ("2", SPIN_ECHO, POST),
    ("3", FLAIR, None),
    # post-contrast 3D gradient echo, several vendors
    ("5: AX T1 BRAVO +C", GRE, POST),
    ("AX FSPGR 3D +C", GRE, POST),
    ("Sag 3D MPRAGE post", GRE, POST),
    ("t1_mprage_tra_KM", GRE, POST),
    ("t1_vibe_fs_tra +Gd", GRE, POST),
    ("T1W_3D_TFE C+", GRE, POST),
    ("3D T1 GRE post-contrast", GRE, POST),
    ("t1_fl3d_tra_KM", GRE, POST),
    ("T1 MP-RAGE pre", GRE, PRE),
    ("MPRAGE", GRE, None),
    ("AX BRAVO", GRE, None),
    # T1 spin echo, 2D and 3D
    ("Sag CUBE T1 +C", SPIN_ECHO, POST),
    ("t1_space_tra_gd", SPIN_ECHO, POST),
    ("T1W_3D_TSE (VISTA) +C", SPIN_ECHO, POST),
    ("AX T1 SE pre", SPIN_ECHO, PRE),
    ("AX T1 FSE C+", SPIN_ECHO, POST),
    ("t1_tse_tra", SPIN_ECHO, None),
    ("AX T1", SPIN_ECHO, None),
    ("T1 without contrast", SPIN_ECHO, PRE),
    ("T1 pre-contrast", SPIN_ECHO, PRE),
    ("T1+C", SPIN_ECHO, POST),
    ("AX T1 FLAIR", SPIN_ECHO, None),
    ("AX T1 FLAIR +C", SPIN_ECHO, POST),
    ("T1 pre and post", SPIN_ECHO, None),
    # FLAIR
    ("AX T2 FLAIR", FLAIR, None),
    ("t2_tirm_tra_dark-fl", FLAIR, None),
    ("Sag CUBE FLAIR", FLAIR, None),
    ("DarkFluid 3D", FLAIR, None),
    ("FLAIR +C", FLAIR, POST),
    # not inputs, or of unknown kind
    ("AX T2 FSE", None, None),
    ("AX DWI b1000", None, None),
    ("ADC", None, None),
    ("SWI", None, None),
    ("T2* GRE", None, None),
    ("3-plane localizer", None, None),
    ("ASSET cal", None, None),
    ("AX T1 pre/post SUB", None, None),
    ("Segmentation", None, None),
    ("lesion probability", None, None),
    ("t1c", None, POST),
    ("3D T1", None, None),
    ("10", None, None),
]


@pytest.mark.parametrize("name, kind, contrast", SERIES)
def test_each_series_name_is_classified_by_the_documented_rules(name, kind, contrast):
    found = classify_series(name)
    assert (found.kind, found.contrast) == (kind, contrast), found.reason
    assert found.reason


def test_the_name_list_covers_at_least_thirty_real_world_names():
    assert len(SERIES) >= 30
    assert len({name for name, _, _ in SERIES}) == len(SERIES)


def test_normalise_drops_file_suffix_series_number_and_separators():
    assert normalise("7: Ax_T1-FSE.nii.gz") == "ax t1 fse"
    assert normalise("T1+C") == "t1 +c"
    assert normalise("3") == "3"


def test_capitalised_scanner_descriptions_are_not_brainmetshare_names():
    """"BRAVO" on a GE study may be the pre-contrast series: only lower-case file names are exact."""
    assert classify_series("bravo").exact_role == "bravo"
    assert classify_series("BRAVO").exact_role is None
    assert classify_series("BRAVO").contrast is None


def _names_by_role(names, assignment):
    return {role: (None if index is None else names[index]) for role, index in assignment.roles.items()}


def test_a_brainmetshare_case_is_assigned_completely():
    names = ["flair", "t1_gd", "bravo", "t1_pre", "seg"]
    assignment = assign_roles(names)
    assert _names_by_role(names, assignment) == {role: role for role in ROLES}
    assert assignment.notes == {}


def test_png_folder_numbers_map_to_the_documented_roles():
    names = ["3", "2", "1", "0"]
    assert _names_by_role(names, assign_roles(names)) == {
        "bravo": "0", "t1_pre": "1", "t1_gd": "2", "flair": "3"}


def test_a_ge_study_with_dicom_series_numbers():
    names = ["1: 3-plane localizer", "2: ASSET cal", "3: AX T2 FSE", "4: AX T2 FLAIR", "5: AX T1 FLAIR",
             "6: AX DWI b1000", "7: AX T1 FLAIR +C", "8: Sag CUBE T1 +C", "9: AX BRAVO +C"]
    # two post-contrast spin echoes: t1_gd is left to the user, with both named
    assignment = assign_roles(names)
    assert assignment.roles["t1_gd"] is None
    assert "2 candidates" in assignment.notes["t1_gd"]
    assert "AX T1 FLAIR +C" in assignment.notes["t1_gd"] and "Sag CUBE T1 +C" in assignment.notes["t1_gd"]
    assert names[assignment.roles["t1_pre"]] == "5: AX T1 FLAIR"
    assert names[assignment.roles["bravo"]] == "9: AX BRAVO +C"
    assert names[assignment.roles["flair"]] == "4: AX T2 FLAIR"


def test_a_siemens_study():
    names = ["localizer", "t2_tse_tra", "t2_tirm_tra_dark-fl", "t1_se_tra", "t1_se_tra_KM", "t1_mprage_sag_KM",
             "ep2d_diff_trace", "ADC"]
    assert _names_by_role(names, assign_roles(names)) == {
        "t1_pre": "t1_se_tra", "t1_gd": "t1_se_tra_KM", "bravo": "t1_mprage_sag_KM", "flair": "t2_tirm_tra_dark-fl"}


def test_a_philips_study():
    names = ["Survey", "T1W_SE pre", "T1W_3D_TSE (VISTA) +C", "T1W_3D_TFE C+", "FLAIR", "DWI"]
    assert _names_by_role(names, assign_roles(names)) == {
        "t1_pre": "T1W_SE pre", "t1_gd": "T1W_3D_TSE (VISTA) +C", "bravo": "T1W_3D_TFE C+", "flair": "FLAIR"}


def test_an_unmarked_series_takes_the_phase_its_marked_sibling_lacks():
    names = ["AX T1", "AX T1 +C", "BRAVO pre", "BRAVO", "FLAIR"]
    assert _names_by_role(names, assign_roles(names)) == {
        "t1_pre": "AX T1", "t1_gd": "AX T1 +C", "bravo": "BRAVO", "flair": "FLAIR"}


def test_an_unmarked_gradient_echo_beside_a_post_contrast_one_is_the_pre_contrast_one():
    names = ["t1_mprage_tra", "t1_mprage_tra_KM"]
    assignment = assign_roles(names)
    assert names[assignment.roles["bravo"]] == "t1_mprage_tra_KM"
    assert assignment.roles["t1_pre"] is None  # a pre-contrast gradient echo is not a spin echo


def test_a_lone_unmarked_gradient_echo_stays_unassigned():
    names = ["MPRAGE", "AX T1 pre", "AX T1 +C", "AX FLAIR"]
    assignment = assign_roles(names)
    assert assignment.roles["bravo"] is None
    assert "no volume" in assignment.notes["bravo"]
    assert names[assignment.roles["t1_pre"]] == "AX T1 pre"


def test_two_unmarked_spin_echoes_stay_unassigned():
    names = ["AX T1", "COR T1", "AX BRAVO +C", "AX FLAIR"]
    assignment = assign_roles(names)
    assert assignment.roles["t1_pre"] is None and assignment.roles["t1_gd"] is None


def test_ambiguous_kinds_stay_unassigned():
    names = ["t1n", "t1c", "t2w", "t2f"]
    assignment = assign_roles(names)
    assert assignment.roles == {"t1_pre": None, "t1_gd": None, "bravo": None, "flair": 3}


def test_a_post_contrast_flair_gives_way_to_the_plain_one():
    names = ["FLAIR +C", "AX T2 FLAIR"]
    assert assign_roles(names).roles["flair"] == 1


def test_two_plain_flairs_stay_unassigned_with_both_named():
    names = ["AX FLAIR", "SAG CUBE FLAIR"]
    assignment = assign_roles(names)
    assert assignment.roles["flair"] is None
    assert "'AX FLAIR'" in assignment.notes["flair"] and "'SAG CUBE FLAIR'" in assignment.notes["flair"]


def test_duplicate_names_stay_unassigned():
    names = ["AX BRAVO +C", "AX BRAVO +C"]
    assert assign_roles(names).roles["bravo"] is None


def test_exact_names_win_over_descriptions():
    names = ["bravo", "AX BRAVO +C"]
    assert assign_roles(names).roles["bravo"] == 0


def test_outputs_of_a_previous_run_are_never_inputs():
    names = ["t1_pre", "t1_gd", "bravo", "flair", "spheres lesion probability", "spheres lesions"]
    assert sorted(assign_roles(names).roles.values()) == [0, 1, 2, 3]


def test_no_name_is_given_two_roles():
    names = [name for name, _, _ in SERIES]
    assigned = [index for index in assign_roles(names).roles.values() if index is not None]
    assert len(assigned) == len(set(assigned))


def test_an_empty_scene_assigns_nothing():
    assignment = assign_roles([])
    assert assignment.roles == {role: None for role in ROLES}
    assert set(assignment.notes) == set(ROLES)
