"""A training job's curves as a Slicer chart: loss and validation AP / sensitivity per epoch.

The training panel follows one job at a time in a plot widget of its own, so the chart is
built once and refilled from the job's history (job_status.History) whenever new events
arrive. The x axis is the epoch for every curve: the per-epoch values sit on whole epochs and
the logged training steps between them (step / steps per epoch), so the noisy step loss and
the epoch summaries line up. Each curve has its own two-column table, because a curve's
points are only those measured (no validation cases: no AP points, rather than zeros).

The nodes belong to the panel, not to the user's data: hidden from the Data module and not
saved with the scene. The view node has the panel's parameter node as its layout owner, so
Slicer's view layout never opens a second plot view for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import slicer

from ..job_status import History

X_COLUMN = "epoch"
CURVES: Tuple[Tuple[str, Tuple[float, float, float]], ...] = (
    ("loss (logged steps)", (0.62, 0.62, 0.62)),
    ("training loss", (0.15, 0.15, 0.15)),
    ("validation AP", (0.80, 0.10, 0.10)),
    ("validation max sensitivity", (0.10, 0.35, 0.85)),
)
"""Curve name (also its table column and legend entry) and colour, in drawing order."""


@dataclass
class TrainingChart:
    chart: object
    tables: Dict[str, object]
    series: Dict[str, object]

    def nodes(self) -> List[object]:
        return [self.chart] + list(self.tables.values()) + list(self.series.values())

    def present(self, scene=None) -> bool:
        """Whether every node is still in the scene (closing the scene removes them)."""
        scene = scene or slicer.mrmlScene
        return all(scene.IsNodePresent(node) for node in self.nodes())


def _points(x: Sequence[float], y: Sequence[Optional[float]]) -> Tuple[np.ndarray, np.ndarray]:
    """The (x, y) pairs whose y was measured."""
    pairs = [(float(a), float(b)) for a, b in zip(x, y) if b is not None]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*pairs)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def history_points(history: History, steps_per_epoch: Optional[float]) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Each curve's (epoch, value) points. Without `steps_per_epoch` (a run whose size is not
    known yet) the step curve is empty, since its steps cannot be put on the epoch axis."""
    if steps_per_epoch:
        step_epochs = np.asarray(history.steps, dtype=np.float64) / float(steps_per_epoch)
        steps = _points(step_epochs, history.loss)
    else:
        steps = _points([], [])
    return {
        CURVES[0][0]: steps,
        CURVES[1][0]: _points(history.epochs, history.train_loss),
        CURVES[2][0]: _points(history.epochs, history.ap),
        CURVES[3][0]: _points(history.epochs, history.sensitivity),
    }


def _panel_node(class_name: str, name: str):
    node = slicer.mrmlScene.AddNewNodeByClass(class_name, name)
    node.SetHideFromEditors(True)
    node.SetSaveWithScene(False)
    return node


def add_training_chart(name: str = "BrainMetSeg training") -> TrainingChart:
    """A chart with one (empty) curve per CURVES entry, ready for show_history."""
    chart = _panel_node("vtkMRMLPlotChartNode", f"{name} chart")
    chart.SetXAxisTitle("epoch")
    chart.SetYAxisTitle("loss; AP and sensitivity (0-1)")
    chart.SetLegendVisibility(True)
    tables, series = {}, {}
    for curve, colour in CURVES:
        table = _panel_node("vtkMRMLTableNode", f"{name}: {curve}")
        slicer.util.updateTableFromArray(table, [np.zeros(0), np.zeros(0)], [X_COLUMN, curve])
        plot = _panel_node("vtkMRMLPlotSeriesNode", curve)
        plot.SetAndObserveTableNodeID(table.GetID())
        plot.SetXColumnName(X_COLUMN)
        plot.SetYColumnName(curve)
        plot.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        plot.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
        plot.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone if curve == CURVES[0][0]
                            else slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        plot.SetColor(*colour)
        chart.AddAndObservePlotSeriesNodeID(plot.GetID())
        tables[curve], series[curve] = table, plot
    return TrainingChart(chart, tables, series)


def show_history(chart: TrainingChart, history: History, steps_per_epoch: Optional[float],
                 title: str = "") -> Dict[str, int]:
    """Refill the chart's curves from `history`; returns each curve's number of points."""
    counts = {}
    for curve, (x, y) in history_points(history, steps_per_epoch).items():
        slicer.util.updateTableFromArray(chart.tables[curve], [x, y], [X_COLUMN, curve])
        counts[curve] = len(x)
    chart.chart.SetTitle(title)
    return counts


def add_panel_plot_view(chart: TrainingChart, owner_node):
    """A plot view node showing `chart`, owned by `owner_node` (kept out of the view layout)."""
    view = _panel_node("vtkMRMLPlotViewNode", f"{chart.chart.GetName()} view")
    view.SetAndObserveParentLayoutNodeID(owner_node.GetID())
    view.SetPlotChartNodeID(chart.chart.GetID())
    return view
