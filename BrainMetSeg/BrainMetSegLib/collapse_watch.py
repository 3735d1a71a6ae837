"""The trainer's watch for runs that went wrong without failing: warnings for the epoch event,
the run summary and the report, never a silent "best model".

Two ways to go wrong were seen. The bootstrap loop can settle on "everything is lesion": the
share of brain voxels predicted lesion jumps. And a network can settle on "nothing is lesion"
(half the lesions censored, README "Why training seed 0 of cohort 7 learned nothing"): it calls
no voxel at all, or a few spots and none on a labelled lesion, which the voxel share cannot tell
from a network that is learning; the lesion-level check on the validation cases can. On that
run a lower learning rate or a larger α let the same seed learn, hence the advice. "Nothing
is lesion" is judged only after the β = 1 warm-up: calling nothing yet is normal early on (the
demo's first epoch).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

POSITIVE_PROBABILITY = 0.5
"""A voxel counts as predicted lesion for the collapse watch where p >= 0.5 (the argmax)."""
COLLAPSE_MAX_SHARE = 0.2
COLLAPSE_RATIO = 10.0
COLLAPSE_MIN_SHARE = 0.02
"""Collapse watch: more than 20% of brain voxels predicted lesion, or more than 10 times the
labelled share when that is also above 2% of the brain (below 2% an over-eager but useful model
is normal early in training)."""
NOT_LEARNING_ADVICE = "if it persists, try a lower learning rate (--lr), a larger alpha (--alpha) or another --seed"
"""A network can still start finding lesions an epoch later (cohort 6, censored CE, seed 2: none
of the validation lesions after 500 steps, 37% of the test lesions after 1,000)."""


def collapse_message(positive_share: Optional[float], label_share: Optional[float], where: str,
                     past_warmup: bool = True) -> Optional[str]:
    """A warning when the predicted lesion share of brain voxels looks like a collapse (to lesion
    everywhere, or, once past the warm-up, to no lesion at all where lesions are labelled), else None."""
    if positive_share is None:
        return None
    if positive_share == 0 and label_share and past_warmup:
        return (f"{where}: no brain voxel predicted lesion although {100 * label_share:.2f}% is labelled; "
                f"the network may have settled on background only ({NOT_LEARNING_ADVICE})")
    limit = COLLAPSE_MAX_SHARE
    if label_share is not None and label_share > 0:
        limit = min(limit, max(COLLAPSE_RATIO * label_share, COLLAPSE_MIN_SHARE))
    if positive_share <= limit:
        return None
    labelled = "" if label_share is None else f" (labelled: {100 * label_share:.2f}%)"
    return (f"{where}: {100 * positive_share:.1f}% of brain voxels predicted lesion{labelled}, above the "
            f"collapse limit {100 * limit:.1f}%; the bootstrap loop may have collapsed (try a longer "
            "warm-up, a larger beta or a smaller alpha)")


def no_lesion_found_message(summary: Mapping[str, Any], where: str, past_warmup: bool = True) -> Optional[str]:
    """A warning when, after the warm-up, the validation cases hold labelled lesions and the
    network found none of them at any confidence (`summary` as metrics.summarise gives it)."""
    lesions, predictions = summary["n_lesions"], summary["n_predictions"]
    if not past_warmup or lesions == 0 or summary["max_sensitivity"]:
        return None
    called = "it called none" if predictions == 0 else f"all {predictions} it called are false positives"
    return (f"{where}: none of the {lesions} labelled lesion(s) found ({called}); the network has not "
            f"learned lesions yet ({NOT_LEARNING_ADVICE})")


def validation_verdict(positive_share: Optional[float], label_share: Optional[float],
                       summary: Mapping[str, Any], where: str, past_warmup: bool = True) -> Optional[str]:
    """One warning for the validation cases of an epoch: the voxel-share collapse if there is one,
    else whether no labelled lesion was found (one cause, said once). A network that finds a
    lesion with no voxel at p >= 0.5 is unsure, not settled on background."""
    if positive_share == 0 and summary["max_sensitivity"]:
        return None
    return (collapse_message(positive_share, label_share, where, past_warmup)
            or no_lesion_found_message(summary, where, past_warmup))
