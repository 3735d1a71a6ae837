"""A training job's curves as a Slicer chart (the points are training_curves').

The training panel follows one job at a time in a plot widget of its own, so the chart is
built once and refilled whenever the job logs something new. Each curve has its own
two-column table (epoch, value), because curves have different numbers of points.

The nodes belong to the panel, not to the user's data: hidden from the Data module and not
saved with the scene. The view node has a layout owner (the panel's parameter node), so
Slicer's view layout never opens a second plot view for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import slicer

from ..job_status import History
from ..training_curves import CURVES, STEP_LOSS, history_points

X_COLUMN = "epoch"


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


def _panel_node(class_name: str, name: str):
    node = slicer.mrmlScene.AddNewNodeByClass(class_name, name)
    node.SetHideFromEditors(True)
    node.SetSaveWithScene(False)
    return node


def add_training_chart(name: str = "BrainMetSeg training") -> TrainingChart:
    """A chart with one empty curve per training_curves.CURVES entry, ready for show_history."""
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
        plot.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone if curve == STEP_LOSS
                            else slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        plot.SetColor(*colour)
        chart.AddAndObservePlotSeriesNodeID(plot.GetID())
        tables[curve], series[curve] = table, plot
    return TrainingChart(chart, tables, series)


def show_history(chart: TrainingChart, history: History, per_epoch: Optional[float],
                 title: str = "") -> Dict[str, int]:
    """Refill the chart's curves from `history` (`per_epoch`: steps per epoch, None while not
    known); returns each curve's number of points."""
    counts = {}
    for curve, (x, y) in history_points(history, per_epoch).items():
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
