"""A job's training curves: the points (training_curves) and the Slicer chart that shows them
(scene/training_plot), against real MRML classes from slicer-core and events written by the
trainer's own EventWriter and read back through a Job, as the training panel reads them."""
from __future__ import annotations

import numpy as np
import pytest
import slicer
import slicer.util

from BrainMetSegLib.events import EVENTS_FILE, EventWriter
from BrainMetSegLib.job_status import History
from BrainMetSegLib.jobs import Job
from BrainMetSegLib.scene.training_plot import X_COLUMN, add_panel_plot_view, add_training_chart, show_history
from BrainMetSegLib.training_curves import (CURVES, STEP_LOSS, TRAIN_LOSS, VALIDATION_AP, VALIDATION_SENSITIVITY,
                                            history_points, steps_per_epoch)
from helpers_scene import slicer_scene

TOTAL_STEPS, EPOCHS = 40, 2
"""A run of 2 epochs of 20 steps, logging every 10th step."""


def write_run(run, validation=True, resumed=False) -> None:
    """The events of the run above, written as the trainer writes them. `resumed`: the run was
    stopped after step 30 and resumed from its checkpoint at step 20, so steps 30 and the end of
    epoch 2 are logged again (with other values) after the `stopped` event."""
    writer = EventWriter(run / EVENTS_FILE)
    writer.write("started", options={"epochs": EPOCHS})
    steps = [(10, 0.9), (20, 0.6), (30, 0.5)]
    if resumed:
        steps += [(30, 0.45)]
    steps += [(40, 0.3)]
    for step, loss in steps:
        writer.write("step", step=step, total_steps=TOTAL_STEPS, epoch=(step - 1) // 20 + 1, loss=loss, eta_s=5.0)
        if step == 30 and resumed and loss == 0.5:
            writer.write("stopped", step=30, epoch=2)
            writer.write("started", options={"epochs": EPOCHS}, resumed_from=20)
        if step in (20, 40):
            epoch = step // 20
            metrics = {"ap": 0.2 * epoch, "max_sensitivity": 0.4 * epoch} if validation else None
            writer.write("epoch", epoch=epoch, step=step, train_loss=1.0 / epoch, validation=metrics)
    writer.write("finished", step=TOTAL_STEPS)


# --- points ------------------------------------------------------------------------------------

def test_points_put_logged_steps_and_epochs_on_one_epoch_axis(tmp_path):
    write_run(tmp_path)
    job = Job(tmp_path)
    status = job.status()
    per_epoch = steps_per_epoch(status.total_steps, status.epochs)
    assert per_epoch == 20.0
    points = history_points(job.history(), per_epoch)
    assert list(points) == [name for name, _ in CURVES]
    np.testing.assert_allclose(points[STEP_LOSS][0], [0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(points[STEP_LOSS][1], [0.9, 0.6, 0.5, 0.3])
    np.testing.assert_allclose(points[TRAIN_LOSS][0], [1.0, 2.0])
    np.testing.assert_allclose(points[TRAIN_LOSS][1], [1.0, 0.5])
    np.testing.assert_allclose(points[VALIDATION_AP][1], [0.2, 0.4])
    np.testing.assert_allclose(points[VALIDATION_SENSITIVITY][1], [0.4, 0.8])


def test_a_resumed_run_plots_the_repeated_step_once_with_its_latest_value(tmp_path):
    write_run(tmp_path, resumed=True)
    points = history_points(Job(tmp_path).history(), 20.0)
    np.testing.assert_allclose(points[STEP_LOSS][0], [0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(points[STEP_LOSS][1], [0.9, 0.6, 0.45, 0.3])


def test_unmeasured_values_are_left_out_not_drawn_as_zero(tmp_path):
    write_run(tmp_path, validation=False)
    points = history_points(Job(tmp_path).history(), 20.0)
    assert points[VALIDATION_AP][0].size == 0 and points[VALIDATION_SENSITIVITY][0].size == 0
    assert points[TRAIN_LOSS][0].size == 2
    gaps = History(steps=[10, 20, 30], loss=[0.5, None, 0.25], epochs=[1], train_loss=[None], ap=[0.3],
                   sensitivity=[0.6])
    points = history_points(gaps, 10.0)
    np.testing.assert_allclose(points[STEP_LOSS][0], [1.0, 3.0])
    assert points[TRAIN_LOSS][0].size == 0


def test_steps_have_no_place_before_the_run_size_is_known():
    history = History(steps=[10], loss=[0.5], epochs=[], train_loss=[], ap=[], sensitivity=[])
    assert steps_per_epoch(None, 10) is None and steps_per_epoch(3000, None) is None
    assert steps_per_epoch(3000, 10) == 300.0
    assert history_points(history, None)[STEP_LOSS][0].size == 0


# --- the Slicer chart ----------------------------------------------------------------------------

@pytest.fixture
def scene():
    with slicer_scene() as fixture:
        yield fixture


def column(table_node, name) -> np.ndarray:
    return slicer.util.arrayFromTableColumn(table_node, name)


def test_chart_shows_every_curve_from_its_own_table(scene, tmp_path):
    write_run(tmp_path)
    job = Job(tmp_path)
    chart = add_training_chart()
    assert chart.chart.GetNumberOfPlotSeriesNodes() == len(CURVES)
    counts = show_history(chart, job.history(), 20.0, title=job.name)
    assert counts == {STEP_LOSS: 4, TRAIN_LOSS: 2, VALIDATION_AP: 2, VALIDATION_SENSITIVITY: 2}
    assert chart.chart.GetTitle() == job.name
    for name, colour in CURVES:
        series = chart.series[name]
        assert series.GetTableNode() is chart.tables[name]
        assert (series.GetXColumnName(), series.GetYColumnName()) == (X_COLUMN, name)
        assert series.GetColor() == pytest.approx(colour)
    np.testing.assert_allclose(column(chart.tables[VALIDATION_AP], X_COLUMN), [1.0, 2.0])
    np.testing.assert_allclose(column(chart.tables[VALIDATION_AP], VALIDATION_AP), [0.2, 0.4])
    np.testing.assert_allclose(column(chart.tables[STEP_LOSS], STEP_LOSS), [0.9, 0.6, 0.5, 0.3])


def test_refilling_replaces_the_points(scene, tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", validation=False)
    chart = add_training_chart()
    show_history(chart, Job(tmp_path / "a").history(), 20.0)
    counts = show_history(chart, Job(tmp_path / "b").history(), 20.0)
    assert counts[VALIDATION_AP] == 0
    assert chart.tables[VALIDATION_AP].GetNumberOfRows() == 0
    assert chart.tables[STEP_LOSS].GetNumberOfRows() == 4
    assert chart.tables[STEP_LOSS].GetNumberOfColumns() == 2


def test_chart_nodes_are_the_panels_and_leave_with_the_scene(scene):
    chart = add_training_chart()
    owner = scene.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "panel parameters")
    view = add_panel_plot_view(chart, owner)
    assert view.GetPlotChartNodeID() == chart.chart.GetID()
    assert view.GetParentLayoutNode() is owner  # kept out of the view layout
    for node in chart.nodes() + [view]:
        assert node.GetHideFromEditors() and not node.GetSaveWithScene(), node.GetName()
    assert chart.present()
    scene.scene.RemoveNode(chart.tables[TRAIN_LOSS])
    assert not chart.present()
