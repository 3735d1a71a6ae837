"""Cross-check of the lesion metrics against panoptica, an independent public implementation.

What is compared, and why only that: panoptica matches predicted and reference instances by
overlap (here any IoU >= 0.01), whereas DESIGN.md matches a prediction by its centroid
(inside a ground-truth voxel box or within 1 mm of a ground-truth voxel centre). The two
rules agree when every predicted lesion either overlaps exactly one ground-truth lesion with
its centroid inside it, or overlaps nothing, which is how the cases below are generated (and
the test checks that it holds). On such cases panoptica can judge:
  - the instances: number of ground-truth lesions and of predicted lesions, both 26-connected
    components (panoptica's cc3d backend);
  - the matching outcome: how many ground-truth lesions are found (its TP count) and how many
    predictions are false positives;
  - the per-lesion Dice of matched lesions, i.e. our TP Dice inputs, and their mean.
AP, the CI, FROC and the 1 mm rule have no counterpart in panoptica; test_metrics.py checks
them against hand-computed answers instead.
"""
from __future__ import annotations

import numpy as np
import pytest
from panoptica import (CCABackend, ConnectedComponentsInstanceApproximator, InputType, Metric, MetricMode,
                       NaiveThresholdMatching, Panoptica_Evaluator, disable_citation_reminder)

from BrainMetSegLib.lesions import connected_components, rank_components
from BrainMetSegLib.metrics import evaluate_case, summarise

from helpers_lesions import ball, oblique_affine

SHAPE = (40, 40, 24)
AFFINE = oblique_affine((0.9, 0.9, 1.5))


def generated_case(seed: int):
    """Ball lesions of radius 2-5 mm; each found (shifted, resized), or missed; plus FP balls."""
    rng = np.random.default_rng(seed)
    label = np.zeros(SHAPE, dtype=np.uint8)
    probability = np.zeros(SHAPE, dtype=np.float32)
    centres, radii = [], []
    corner, far = AFFINE[:3, 3], AFFINE[:3, :3] @ (np.array(SHAPE) - 1.0) + AFFINE[:3, 3]
    low, high = np.minimum(corner, far), np.maximum(corner, far)
    while len(centres) < 7:
        radius = rng.uniform(2.0, 5.0)
        centre = rng.uniform(low, high)
        # far apart, so that a resized prediction never reaches another lesion
        if all(np.linalg.norm(centre - c) > 1.3 * (radius + r) + 3.0 for c, r in zip(centres, radii)):
            centres.append(centre)
            radii.append(radius)
    inside = [ball(SHAPE, AFFINE, c, r) for c, r in zip(centres, radii)]
    keep = [n for n, mask in enumerate(inside) if mask.sum() >= 8]   # skip balls cut away by the grid edge
    for n in keep[:5]:
        label[inside[n]] = 1
        if rng.random() < 0.25:
            continue                                    # missed lesion
        shift = rng.normal(size=3)
        shift *= rng.uniform(0.0, 0.3) * radii[n] / np.linalg.norm(shift)
        found = ball(SHAPE, AFFINE, centres[n] + shift, radii[n] * rng.uniform(0.7, 1.3))
        probability[found] = rng.uniform(0.2, 1.0)
    for n in keep[5:]:
        probability[inside[n]] = rng.uniform(0.2, 1.0)  # false positives away from every lesion
    return probability, label


def panoptica_result(prediction: np.ndarray, label: np.ndarray):
    evaluator = Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC,
        instance_approximator=ConnectedComponentsInstanceApproximator(cca_backend=CCABackend.cc3d),
        instance_matcher=NaiveThresholdMatching(matching_metric=Metric.IOU, matching_threshold=0.01),
        instance_metrics=[Metric.DSC],
    )
    (result,) = evaluator.evaluate(prediction.astype(np.uint8), label.astype(np.uint8), verbose=False).values()
    return result


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_instances_matching_and_per_lesion_dice_agree_with_panoptica(seed):
    disable_citation_reminder()
    probability, label = generated_case(seed)
    evaluation = evaluate_case(probability, label, AFFINE, threshold=0.1)
    result = panoptica_result(probability >= 0.1, label)

    # the two matching rules agree here: a prediction overlaps at most one lesion, and is a TP
    # by the centroid rule exactly when it overlaps one
    components, _ = rank_components(probability, 0.1)
    truth, _ = connected_components(label)
    for index, prediction in enumerate(evaluation.predictions, start=1):
        touched = set(np.unique(truth[components == index])) - {0}
        assert len(touched) <= 1
        assert prediction.is_tp == bool(touched)
        assert prediction.lesion == (min(touched) - 1 if touched else -1)

    assert evaluation.n_lesions == result.n_ref_instances
    assert len(evaluation.predictions) == result.n_pred_instances

    matched = [n for n, voxels in enumerate(evaluation.tp_predicted_voxels) if voxels > 0]
    false_positives = sum(not p.is_tp for p in evaluation.predictions)
    assert len(matched) == result.tp
    assert false_positives == result.fp
    assert evaluation.n_lesions - len(matched) == result.fn

    ours = sorted(2 * evaluation.tp_overlap_voxels[n] / (evaluation.lesion_voxels[n] + evaluation.tp_predicted_voxels[n])
                  for n in matched)
    theirs = sorted(float(d) for d in result.get_list_metric(Metric.DSC, MetricMode.ALL))
    assert ours == pytest.approx(theirs, abs=1e-12)
    if matched:
        assert summarise([evaluation])["tp_dice"] == pytest.approx(np.mean(theirs), abs=1e-12)


def test_generated_cases_exercise_hits_misses_and_false_positives():
    """The comparison above means something only if the cases hold all three outcomes."""
    hits = misses = false_positives = 0
    for seed in range(4):
        evaluation = evaluate_case(*generated_case(seed), AFFINE)
        found = {p.lesion for p in evaluation.predictions if p.is_tp}
        hits += len(found)
        misses += evaluation.n_lesions - len(found)
        false_positives += sum(not p.is_tp for p in evaluation.predictions)
    assert hits >= 8 and misses >= 1 and false_positives >= 2
