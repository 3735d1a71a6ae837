"""Draw the BrainMetSeg panel from its .ui file, without Slicer, for the README and the extension index.

Slicer cannot run where the documentation is built, so this script loads the module's Qt
Designer file with PySide6, replaces each Slicer/CTK widget by the closest plain Qt widget
(STAND_INS), fills the panel with the state it has after a run (example inputs, a model card
produced by the library's own card_text, lesion rows produced by its lesion_table) and saves a
PNG. Layout, labels, tooltips and order are the .ui's; only the look of the CTK/MRML widgets is
approximated.

    pip install PySide6-Essentials      # not a project dependency
    QT_QPA_PLATFORM=offscreen python Resources/render_panel.py

writes docs/img/brainmetseg-panel.png and Resources/Screenshots/BrainMetSeg.png.
"""
from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
UI_FILE = ROOT / "BrainMetSeg" / "Resources" / "UI" / "BrainMetSeg.ui"
OUTPUTS = (ROOT / "docs" / "img" / "brainmetseg-panel.png", ROOT / "Resources" / "Screenshots" / "BrainMetSeg.png")
PANEL_WIDTH = 440

STAND_INS = {
    "qMRMLWidget": "QWidget",
    "ctkCollapsibleButton": "QGroupBox",
    "qMRMLNodeComboBox": "QComboBox",
    "ctkPathLineEdit": "QLineEdit",
    "ctkSliderWidget": "QSlider",
    "qMRMLTableView": "QTableWidget",
}
"""Slicer/CTK class -> the Qt class drawn in its place (a slider widget also gets a spin box,
a path line edit a browse button, as the CTK widgets have)."""

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
    sys.path.insert(0, str(ROOT / "BrainMetSeg"))
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


def fill(panel, QtWidgets) -> None:
    """Put the panel in the state it has after a finished run."""
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


def render(outputs=OUTPUTS) -> Dict[Path, tuple]:
    """Render the panel and write it to each of `outputs`; returns each path's (width, height)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtCore, QtWidgets
    from PySide6.QtUiTools import QUiLoader

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setStyle("Fusion")
    font = app.font()
    font.setPointSize(9)
    app.setFont(font)
    buffer = QtCore.QBuffer()
    buffer.setData(QtCore.QByteArray(stand_in_ui(UI_FILE.read_text(encoding="utf-8"))))
    buffer.open(QtCore.QIODevice.ReadOnly)
    panel = QUiLoader().load(buffer)
    if panel is None:
        raise RuntimeError(f"{UI_FILE}: Qt could not load the stand-in panel")
    panel.setStyleSheet("QGroupBox { font-weight: bold; } QGroupBox QWidget { font-weight: normal; }")
    fill(panel, QtWidgets)
    panel.resize(PANEL_WIDTH, 100)
    panel.adjustSize()
    panel.resize(PANEL_WIDTH, panel.sizeHint().height())
    image = panel.grab()
    written = {}
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(path), "PNG"):
            raise RuntimeError(f"{path}: could not be written")
        written[path] = (image.width(), image.height())
    return written


if __name__ == "__main__":
    for path, size in render().items():
        print(f"{path.relative_to(ROOT)}: {size[0]}x{size[1]}")
