"""Draw a module panel from its .ui file, without Slicer, for the README and the extension index.

Slicer cannot run where the documentation is built, so this script loads the module's Qt
Designer file with PySide6, replaces each Slicer/CTK widget by the closest plain Qt widget
(STAND_INS), fills the panel with example contents made by the library's own code where it has
the text (model card, lesion table, dataset summary, job states, training curves) and saves a
PNG. Layout, labels, tooltips and order are the .ui's; only the look of the CTK/MRML widgets is
approximated (the training chart is drawn with matplotlib in the plot widget's place).

    pip install PySide6-Essentials      # not a project dependency
    QT_QPA_PLATFORM=offscreen python Resources/render_panel.py [BrainMetSeg] [BrainMetSegTrain]

With no module named it draws both. BrainMetSeg: docs/img/brainmetseg-panel.png and
Resources/Screenshots/BrainMetSeg.png; BrainMetSegTrain: docs/img/brainmetsegtrain-panel.png and
Resources/Screenshots/BrainMetSegTrain.png.
"""
from __future__ import annotations

import ast
import io
import os
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("BrainMetSeg", "BrainMetSegTrain")
PANEL_WIDTH = 440


def ui_file(module: str) -> Path:
    return ROOT / module / "Resources" / "UI" / f"{module}.ui"


def outputs(module: str) -> Tuple[Path, Path]:
    """The README's picture and the extension index's screenshot (the same PNG)."""
    return (ROOT / "docs" / "img" / f"{module.lower()}-panel.png", ROOT / "Resources" / "Screenshots" / f"{module}.png")


STAND_INS = {
    "qMRMLWidget": "QWidget",
    "ctkCollapsibleButton": "QGroupBox",
    "qMRMLNodeComboBox": "QComboBox",
    "ctkPathLineEdit": "QLineEdit",
    "ctkSliderWidget": "QSlider",
    "qMRMLTableView": "QTableWidget",
    "qMRMLPlotWidget": "QLabel",
}
"""Slicer/CTK class -> the Qt class drawn in its place (a slider widget also gets a spin box,
a path line edit a browse button, as the CTK widgets have; a plot widget shows a picture)."""

DROPPED_PROPERTIES = {
    "qMRMLNodeComboBox": {"nodeTypes", "showChildNodeTypes", "noneEnabled", "addEnabled", "removeEnabled"},
    "ctkPathLineEdit": {"filters"},
    "ctkSliderWidget": {"decimals", "singleStep", "pageStep", "minimum", "maximum", "value"},
}
"""Properties the stand-in lacks (Qt's loader would warn about each)."""

ARROW = "\u25bc  "  # a ctkCollapsibleButton's expanded arrow

EXAMPLE_NODES = {
    "t1PreSelector": "3: AX T1 SE pre",
    "t1GdSelector": "4: AX T1 SE +C",
    "bravoSelector": "5: AX BRAVO +C",
    "flairSelector": "2: AX T2 FLAIR",
}
"""Series descriptions as a DICOM import names the volumes; the module assigns them by these names."""

EXAMPLE_DEVICE = "cuda:0 (NVIDIA RTX A4000, 16 GiB)"
EXAMPLE_CUTOFF = 0.5
EXAMPLE_WARNING = ("flair: grid differs from bravo (shape 256x256x28, spacing 0.898x0.898x5 mm vs 256x256x172, "
                   "0.938x0.938x1 mm); resampled onto the bravo grid (linear)")


def _library():
    folder = str(ROOT / "BrainMetSeg")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    from BrainMetSegLib import lesions, model_card

    return lesions, model_card


def _property(element: ElementTree.Element, name: str) -> Optional[ElementTree.Element]:
    return next((prop for prop in element.findall("property") if prop.get("name") == name), None)


def _string_property(name: str, value: str) -> ElementTree.Element:
    prop = ElementTree.Element("property", name=name)
    ElementTree.SubElement(prop, "string").text = value
    return prop


def _number(element: ElementTree.Element, name: str, default: float) -> float:
    prop = _property(element, name)
    if prop is None or len(prop) == 0:
        return default
    return float(prop[0].text)


def _wrap_with_box(widget: ElementTree.Element, extra: ElementTree.Element) -> ElementTree.Element:
    """A plain QWidget holding `widget` and `extra` side by side, in `widget`'s place."""
    box = ElementTree.Element("widget", {"class": "QWidget", "name": widget.get("name") + "Box"})
    layout = ElementTree.SubElement(box, "layout", {"class": "QHBoxLayout", "name": widget.get("name") + "BoxLayout"})
    for side in ("leftMargin", "topMargin", "rightMargin", "bottomMargin"):
        margin = ElementTree.SubElement(layout, "property", name=side)
        ElementTree.SubElement(margin, "number").text = "0"
    for child in (widget, extra):
        item = ElementTree.SubElement(layout, "item")
        item.append(child)
    return box


def stand_in_ui(ui_text: str) -> bytes:
    """The .ui with every Slicer/CTK widget replaced by Qt widgets and the MRML connections removed."""
    root = ElementTree.fromstring(ui_text)
    parents = {child: parent for parent in root.iter() for child in parent}
    for widget in list(root.iter("widget")):
        original = widget.get("class")
        if original not in STAND_INS:
            continue
        for prop in list(widget.findall("property")):
            if prop.get("name") in DROPPED_PROPERTIES.get(original, ()):
                widget.remove(prop)
        widget.set("class", STAND_INS[original])
        if original == "ctkCollapsibleButton":
            text = _property(widget, "text")
            title = _string_property("title", ARROW + (text.findtext("string") or ""))
            widget.remove(text)
            widget.insert(0, title)
        elif original in ("ctkSliderWidget", "ctkPathLineEdit"):
            source = next(element for element in ElementTree.fromstring(ui_text).iter("widget")
                          if element.get("name") == widget.get("name"))
            if original == "ctkSliderWidget":
                orientation = ElementTree.SubElement(widget, "property", name="orientation")
                ElementTree.SubElement(orientation, "enum").text = "Qt::Horizontal"
                extra = ElementTree.Element("widget", {"class": "QDoubleSpinBox", "name": widget.get("name") + "SpinBox"})
                for name, default in (("decimals", 2), ("minimum", 0.0), ("maximum", 1.0), ("singleStep", 0.01),
                                      ("value", 0.0)):
                    prop = ElementTree.SubElement(extra, "property", name=name)
                    tag = "number" if name == "decimals" else "double"
                    value = _number(source, name, default)
                    ElementTree.SubElement(prop, tag).text = str(int(value)) if tag == "number" else repr(value)
            else:
                extra = ElementTree.Element("widget", {"class": "QToolButton", "name": widget.get("name") + "Browse"})
                extra.append(_string_property("text", "\u2026"))
            parent = parents[widget]
            position = list(parent).index(widget)
            parent.remove(widget)
            parent.insert(position, _wrap_with_box(widget, extra))
    for section in ("customwidgets", "connections"):
        for element in root.findall(section):
            root.remove(element)
    return ElementTree.tostring(root, encoding="utf-8")


def example_card() -> Tuple[str, str]:
    """The model card as the panel shows it (written by the library for a synthetic-data demo
    model) and the warning line the panel shows in red."""
    _, model_card = _library()
    config = model_card.ModelConfig(
        name="demo-synthetic-lopsided", backbone="mobilenet_v3_large", synthetic_training_data=True,
        pixel_spacing_mm=[2.0, 2.0], slice_spacing_mm=2.0, in_plane_size=[128, 128], operating_point=EXAMPLE_CUTOFF,
        training={"data": "24 synthetic cases (small preset), 50% of lesions censored", "loss": "lopsided",
                  "alpha": 3.0, "beta": 0.1, "censoring": "stochastic 0.5", "epochs": 4,
                  "validation": {"ap": 0.61, "max_sensitivity": 0.83}},
        created="2026-01-15T10:42:00+00:00")
    return model_card.card_text(config), model_card.SYNTHETIC_WARNING


def example_lesions():
    lesions, _ = _library()
    examples = [  # index, voxels, volume, equivalent diameter, max axial diameter, centroid, confidence
        (1, 3120, 3120.0, 18.13, 21.4, (24.6, -12.3, 18.9), 0.93),
        (2, 410, 410.0, 9.22, 10.8, (-31.2, 8.4, 41.7), 0.81),
        (3, 65, 65.0, 4.99, 5.6, (12.9, 44.1, -6.3), 0.57),
        (4, 14, 14.0, 2.99, 3.1, (-8.8, -52.6, 27.5), 0.34),
    ]
    return [lesions.Lesion(index, voxels, volume, diameter, axial, centroid, (), confidence)
            for index, voxels, volume, diameter, axial, centroid, confidence in examples], lesions


def fill_inference(panel, QtWidgets) -> None:
    """Put the BrainMetSeg panel in the state it has after a finished run."""
    find = lambda cls, name: panel.findChild(cls, name)  # noqa: E731
    for name, node in EXAMPLE_NODES.items():
        find(QtWidgets.QComboBox, name).addItem(node)
    find(QtWidgets.QLabel, "inputNotesLabel").setVisible(False)

    card, warning = example_card()
    models = find(QtWidgets.QComboBox, "modelComboBox")
    models.addItem("demo-synthetic-lopsided (synthetic data)")
    models.setStyleSheet("QComboBox { color: #c00000; }")
    find(QtWidgets.QLineEdit, "modelsDirectoryPathLineEdit").setText("~/.brainmetseg/models")
    lines = []
    for line in card.rstrip("\n").split("\n"):
        text = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines.append(f'<span style="color:#c00000; font-weight:bold;">{text}</span>' if line == warning else text)
    find(QtWidgets.QTextEdit, "modelCardTextEdit").setHtml("<br>".join(lines))
    find(QtWidgets.QLabel, "deviceInfoLabel").setText(EXAMPLE_DEVICE)

    find(QtWidgets.QLabel, "statusLabel").setText("Ready: press Apply.")
    find(QtWidgets.QProgressBar, "progressBar").setValue(100)
    log = find(QtWidgets.QPlainTextEdit, "logTextEdit")
    for message in ("Segmenting '5: AX BRAVO +C' with model 'demo-synthetic-lopsided' (Auto).",
                    "[  0.0 s] loading model demo-synthetic-lopsided",
                    f"[  1.9 s] running on {EXAMPLE_DEVICE}",
                    "[  2.1 s] 5: AX BRAVO +C: resampling to the model grid",
                    "[  4.8 s] 5: AX BRAVO +C: segmenting: batch 6 of 6",
                    "[  5.6 s] 5: AX BRAVO +C: 4 lesion(s)",
                    f"Warning: {EXAMPLE_WARNING}",
                    "4 lesion(s) found in 6 s; 3 shown at the model's operating point (confidence ≥ 0.50)."):
        log.appendPlainText(message)

    lesions, library = example_lesions()
    find(QtWidgets.QLabel, "resultWarningLabel").setText(EXAMPLE_WARNING)
    find(QtWidgets.QSlider, "cutoffSliderWidget").setRange(0, 100)
    find(QtWidgets.QSlider, "cutoffSliderWidget").setValue(int(EXAMPLE_CUTOFF * 100))
    find(QtWidgets.QDoubleSpinBox, "cutoffSliderWidgetSpinBox").setValue(EXAMPLE_CUTOFF)
    shown = sum(lesion.confidence >= EXAMPLE_CUTOFF for lesion in lesions)
    find(QtWidgets.QLabel, "shownLesionsLabel").setText(
        f"{shown} of {len(lesions)} lesions shown (confidence ≥ {EXAMPLE_CUTOFF:.2f}).")
    table = find(QtWidgets.QTableWidget, "lesionTableView")
    rows = library.lesion_table(lesions)
    titles = _column_titles(library.TABLE_COLUMNS)
    table.setColumnCount(len(titles))
    table.setRowCount(len(rows))
    table.setHorizontalHeaderLabels(titles)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(22)
    for row, values in enumerate(rows):
        for column, key in enumerate(library.TABLE_COLUMNS):
            table.setItem(row, column, QtWidgets.QTableWidgetItem(str(values[key])))
    table.resizeColumnsToContents()
    table.selectRow(1)


def _column_titles(columns) -> List[str]:
    """Slicer's table view shows the library's column titles (scene.table.COLUMN_TITLES) with units."""
    from BrainMetSegLib.scene.table import COLUMN_TITLES

    return [f"{COLUMN_TITLES[c][0]} ({COLUMN_TITLES[c][1]})" if COLUMN_TITLES[c][1] else COLUMN_TITLES[c][0]
            for c in columns]


def module_constant(module: str, name: str):
    """A literal constant of a module file (read, not imported: the module files need Slicer)."""
    path = ROOT / module / f"{module}.py"
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(f"{path} defines no {name}")


# --- the training panel -----------------------------------------------------------------------

EXAMPLE_DATASET = "~/data/mets-annotated"
EXAMPLE_RUN = "mets-annotated-20260115-104200"
EXAMPLE_ANNOTATION = "5: AX BRAVO +C lesions (quick)"


def example_summary() -> str:
    """A dataset of 14 cases (some labels partial, some candidates rejected), as the panel prints it."""
    _library()
    from BrainMetSegLib.dataset_summary import DatasetSummary, SplitSummary, format_summary

    splits = {"train": SplitSummary(cases=10, complete=4, partial=6, lesions=37, rejected=5),
              "val": SplitSummary(cases=2, complete=2, lesions=7),
              "test": SplitSummary(cases=2, complete=2, lesions=6)}
    summary = DatasetSummary(Path(EXAMPLE_DATASET), splits)
    for split in splits.values():
        summary.total.add(split)
    return format_summary(summary)


def example_events() -> List[dict]:
    """The events of a run at step 1240 of 3000 (epoch 5 of 10), as the trainer writes them:
    a smoothly falling loss, validation AP and sensitivity rising, then levelling off."""
    import math

    total, per_epoch, now = 3000, 300, 1240
    events = [{"event": "started", "time": "2026-01-15T10:42:05+00:00", "options": {"epochs": 10}}]
    for step in range(10, now + 1, 10):
        loss = 0.045 + 0.55 * math.exp(-step / 260.0) + 0.018 * math.sin(step / 23.0) * math.exp(-step / 900.0)
        events.append({"event": "step", "time": "2026-01-15T10:50:45+00:00", "step": step, "total_steps": total,
                       "epoch": (step - 1) // per_epoch + 1, "loss": loss, "eta_s": 750.0})
        if step % per_epoch == 0:
            epoch = step // per_epoch
            ap, sensitivity = 0.78 * (1 - math.exp(-epoch / 1.6)), 0.93 * (1 - math.exp(-epoch / 1.2))
            events.append({"event": "epoch", "time": "2026-01-15T10:50:45+00:00", "epoch": epoch, "step": step,
                           "train_loss": loss * 1.08, "best_epoch": epoch, "best_ap": ap,
                           "validation": {"ap": ap, "max_sensitivity": sensitivity}})
    return events


def example_jobs():
    """Three runs as the jobs list shows them: (name, state, message), the first selected."""
    _library()
    from BrainMetSegLib.job_status import JobStatus, describe, job_status

    running = job_status(example_events(), 0, alive=True)
    running.eta_s = 750.0
    running.message = describe(running)
    finished = JobStatus(state="finished", message="", progress=1.0, best_epoch=9, best_ap=0.712)
    finished.message = describe(finished)
    stopped = JobStatus(state="stopped", message="", step=400, total_steps=2000, epoch=2, epochs=10, progress=0.2)
    stopped.message = describe(stopped)
    return [(EXAMPLE_RUN, running), ("mets-annotated-ce-20260112-091500", finished),
            ("mets-size-censored-20260110-163000", stopped)]


def training_plot_png(width: int, height: int) -> bytes:
    """The chart of the example run, drawn from the same points the Slicer chart shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _library()
    from BrainMetSegLib.job_status import job_history
    from BrainMetSegLib.training_curves import CURVES, STEP_LOSS, history_points, steps_per_epoch

    points = history_points(job_history(example_events()), steps_per_epoch(3000, 10))
    dpi = 100
    figure, axes = plt.subplots(figsize=(width / dpi, height / dpi), dpi=dpi)
    for name, colour in CURVES:
        x, y = points[name]
        axes.plot(x, y, color=colour, linewidth=1.0 if name == STEP_LOSS else 1.6,
                  marker=None if name == STEP_LOSS else "o", markersize=4, label=name)
    axes.set_title(EXAMPLE_RUN, fontsize=8)
    axes.set_xlabel("epoch", fontsize=8)
    axes.set_ylabel("loss; AP and sensitivity (0-1)", fontsize=8)
    axes.set_ylim(0, 1)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    figure.tight_layout(pad=0.4)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()


def fill_training(panel, QtWidgets) -> None:
    """Put the BrainMetSegTrain panel in the state it has while a job trains and a review is open."""
    from PySide6 import QtCore, QtGui

    find = lambda cls, name: panel.findChild(cls, name)  # noqa: E731
    for name, node in dict(EXAMPLE_NODES, annotationSelector=EXAMPLE_ANNOTATION).items():
        find(QtWidgets.QComboBox, name).addItem(node)
    find(QtWidgets.QLabel, "inputNotesLabel").setVisible(False)
    find(QtWidgets.QLabel, "statusLabel").setText("The four sequences and the annotation are selected.")

    find(QtWidgets.QLineEdit, "datasetPathLineEdit").setText(EXAMPLE_DATASET)
    find(QtWidgets.QLineEdit, "caseIdLineEdit").setText("Mets_014")
    find(QtWidgets.QLabel, "exportStatusLabel").setText(
        f"Mets_014: written to {EXAMPLE_DATASET}/Mets_014 (2 lesion(s), label partial, split train).")
    find(QtWidgets.QPlainTextEdit, "datasetSummaryTextEdit").setPlainText(example_summary())

    models = find(QtWidgets.QComboBox, "reviewModelComboBox")
    models.addItem("demo-synthetic-lopsided (synthetic data)")
    models.setStyleSheet("QComboBox { color: #c00000; }")
    find(QtWidgets.QPushButton, "findMissedButton").setText("Find missed lesions")
    find(QtWidgets.QProgressBar, "reviewProgressBar").setValue(100)
    from BrainMetSegLib.scene.review_session import candidate_lines

    candidates = find(QtWidgets.QListWidget, "missedLesionsListWidget")
    lesions, _ = example_lesions()
    candidates.addItems(candidate_lines(lesions[1:]))  # the most confident lesion is in the annotation
    candidates.setCurrentRow(0)
    find(QtWidgets.QLabel, "reviewStatusLabel").setText(
        f"The model found {len(lesions)} lesion(s); {len(lesions) - 1} of them are not in the annotation.")

    find(QtWidgets.QLabel, "lossNoteLabel").setText(
        "Lopsided bootstrap (α 3, β 0.1) preselected: the dataset has partial labels.")
    find(QtWidgets.QLabel, "validationCasesLabel").setText("2 of 14 case(s) in val")
    find(QtWidgets.QLineEdit, "runsFolderPathLineEdit").setText("~/.brainmetseg/runs")
    find(QtWidgets.QLineEdit, "runNameLineEdit").setText(EXAMPLE_RUN)
    for name, value in (("censorRateSpinBox", False), ("resumeButton", False), ("useModelButton", False)):
        find(QtWidgets.QWidget, name).setEnabled(value)

    colours = module_constant("BrainMetSegTrain", "STATE_COLOURS")
    jobs = find(QtWidgets.QListWidget, "jobsListWidget")
    for name, status in example_jobs():
        item = QtWidgets.QListWidgetItem(f"{name}\n{status.message}")
        item.setForeground(QtGui.QBrush(QtGui.QColor(colours[status.state])))
        jobs.addItem(item)
    jobs.setCurrentRow(0)
    running = example_jobs()[0][1]
    progress = find(QtWidgets.QProgressBar, "jobProgressBar")
    progress.setValue(round(100 * running.progress))
    progress.setFormat("%p%, 12 min 30 s left")
    find(QtWidgets.QLabel, "jobStatusLabel").setText(running.message)
    plot = find(QtWidgets.QLabel, "trainingPlotWidget")
    pixmap = QtGui.QPixmap()
    pixmap.loadFromData(training_plot_png(PANEL_WIDTH - 20, 250))
    plot.setPixmap(pixmap)
    plot.setAlignment(QtCore.Qt.AlignCenter)
    log = find(QtWidgets.QPlainTextEdit, "jobLogTextEdit")
    for line in ("data: 10 training cases (6 partial), 2 validation cases; 4710 brain slices",
                 "network: DeepLabv3 resnet50 on cuda:0 (NVIDIA RTX A4000, 16 GiB)",
                 "epoch 4: train loss 0.1003, validation AP 0.647, max sensitivity 0.905 (best)",
                 "training:  41%|####1     | 1240/3000 [08:40<12:30,  2.35step/s, loss=0.0835, lr=8.9e-04]"):
        log.appendPlainText(line)


FILLERS: Dict[str, Callable] = {"BrainMetSeg": fill_inference, "BrainMetSegTrain": fill_training}


def render(module: str = "BrainMetSeg", paths: Optional[Tuple[Path, ...]] = None) -> Dict[Path, tuple]:
    """Render `module`'s panel and write it to each of `paths` (default: outputs(module));
    returns each path's (width, height)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtCore, QtWidgets
    from PySide6.QtUiTools import QUiLoader

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setStyle("Fusion")
    font = app.font()
    font.setPointSize(9)
    app.setFont(font)
    path = ui_file(module)
    buffer = QtCore.QBuffer()
    buffer.setData(QtCore.QByteArray(stand_in_ui(path.read_text(encoding="utf-8"))))
    buffer.open(QtCore.QIODevice.ReadOnly)
    panel = QUiLoader().load(buffer)
    if panel is None:
        raise RuntimeError(f"{path}: Qt could not load the stand-in panel")
    panel.setStyleSheet("QGroupBox { font-weight: bold; } QGroupBox QWidget { font-weight: normal; }")
    FILLERS[module](panel, QtWidgets)
    panel.resize(PANEL_WIDTH, 100)
    panel.adjustSize()
    panel.resize(PANEL_WIDTH, panel.sizeHint().height())
    image = panel.grab()
    written = {}
    for target in paths or outputs(module):
        target.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(target), "PNG"):
            raise RuntimeError(f"{target}: could not be written")
        written[target] = (image.width(), image.height())
    return written


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(MODULES)
    unknown = sorted(set(chosen) - set(MODULES))
    if unknown:
        sys.exit(f"unknown module(s) {', '.join(unknown)}; expected {', '.join(MODULES)}")
    for name in chosen:
        for target, size in render(name).items():
            print(f"{target.relative_to(ROOT)}: {size[0]}x{size[1]}")
