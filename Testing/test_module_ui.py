"""The BrainMetSeg panel's code agrees with its .ui file and with the library it calls.

Slicer's Qt is not available here, so BrainMetSeg.py is read as a syntax tree. test_extension_layout
checks that every `self.ui.<name>` exists in the .ui; this file checks that each one is a widget
of a class that has what the code uses on it, that every library function the module calls takes
the arguments it passes, that the attributes the module reads on library results exist, that the
packages it offers to install are the project's dependencies, and that the panel picture is drawn
from every widget class the .ui uses.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MODULE_FILE = ROOT / "BrainMetSeg" / "BrainMetSeg.py"
UI_FILE = ROOT / "BrainMetSeg" / "Resources" / "UI" / "BrainMetSeg.ui"
RENDER_SCRIPT = ROOT / "Resources" / "render_panel.py"
PICTURES = (ROOT / "docs" / "img" / "brainmetseg-panel.png", ROOT / "Resources" / "Screenshots" / "BrainMetSeg.png")

NAME_SUFFIX_CLASSES: Tuple[Tuple[str, Set[str]], ...] = (
    ("CollapsibleButton", {"ctkCollapsibleButton"}),
    ("Selector", {"qMRMLNodeComboBox"}),
    ("PathLineEdit", {"ctkPathLineEdit"}),
    ("SliderWidget", {"ctkSliderWidget"}),
    ("TableView", {"qMRMLTableView", "QTableView"}),
    ("ComboBox", {"QComboBox", "ctkComboBox"}),
    ("CheckBox", {"QCheckBox", "ctkCheckBox"}),
    ("Button", {"QPushButton", "QToolButton", "ctkPushButton"}),
    ("Label", {"QLabel"}),
    ("TextEdit", {"QTextEdit", "QPlainTextEdit", "QTextBrowser"}),
    ("ProgressBar", {"QProgressBar"}),
)
"""Widget-name suffix (any case: `progressBar` is a ProgressBar) -> the classes such a name
promises; the first matching suffix decides."""

ATTRIBUTE_CLASSES: Dict[str, Set[str]] = {
    "setMRMLTableNode": {"qMRMLTableView"},
    "mrmlTableNode": {"qMRMLTableView"},
    "tableModel": {"qMRMLTableView"},
    "sortFilterProxyModel": {"qMRMLTableView"},
    "selectionModel": {"qMRMLTableView", "QTableView"},
    "currentNode": {"qMRMLNodeComboBox"},
    "currentPath": {"ctkPathLineEdit"},
    "collapsed": {"ctkCollapsibleButton"},
    "appendPlainText": {"QPlainTextEdit"},
    "toPlainText": {"QPlainTextEdit", "QTextEdit", "QTextBrowser"},
    "setPlainText": {"QPlainTextEdit", "QTextEdit", "QTextBrowser"},
    "setHtml": {"QTextEdit", "QTextBrowser"},
    "addItem": {"QComboBox", "ctkComboBox"},
    "setItemData": {"QComboBox", "ctkComboBox"},
    "currentIndex": {"QComboBox", "ctkComboBox"},
    "currentText": {"QComboBox", "ctkComboBox"},
    "click": {"QPushButton", "QToolButton", "ctkPushButton", "QCheckBox"},
    "checked": {"QCheckBox", "ctkCheckBox", "QPushButton"},
    "value": {"QProgressBar", "ctkSliderWidget", "QSlider", "QSpinBox", "QDoubleSpinBox"},
    "text": {"QLabel", "QPushButton", "QToolButton", "QCheckBox", "QLineEdit", "ctkCollapsibleButton"},
}
"""Attributes (properties, methods) the module uses on a widget -> the classes that have them."""

RESULT_TYPES = {
    "entry": ("BrainMetSegLib.scene.models", "ModelEntry"),
    "outputs": ("BrainMetSegLib.scene.logic", "SceneOutputs"),
    "lesion": ("BrainMetSegLib.lesions", "Lesion"),
}
"""Local names the module gives to library results (a model-list entry, a run's outputs, a
lesion) -> the library class each holds; every attribute read on them must exist there."""

SLICER_PROVIDED = {"numpy", "SimpleITK"}
"""pyproject dependencies that Slicer's Python ships, so the module never installs them."""


def ui_classes(path: Path = UI_FILE) -> Dict[str, str]:
    return {widget.get("name"): widget.get("class") for widget in ElementTree.parse(path).getroot().iter("widget")}


def ui_uses(tree: ast.AST) -> Dict[str, Set[str]]:
    """`self.ui.<name>` -> the attributes used on it (`self.ui.<name>.<attribute>`)."""
    uses: Dict[str, Set[str]] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui"):
            uses.setdefault(node.attr, set())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Attribute) and node.value.value.attr == "ui"):
            uses[node.value.attr].add(node.attr)
    return uses


def class_problems(uses: Dict[str, Set[str]], classes: Dict[str, str]) -> List[str]:
    """Names missing from the .ui, names whose class their suffix does not promise, and
    attributes used on a widget whose class lacks them."""
    problems = []
    for name in sorted(uses):
        if name not in classes:
            problems.append(f"{name}: not in the .ui")
            continue
        widget_class = classes[name]
        promised = next((allowed for suffix, allowed in NAME_SUFFIX_CLASSES
                         if name.lower().endswith(suffix.lower())), None)
        if promised is None:
            problems.append(f"{name}: no known widget suffix ({', '.join(s for s, _ in NAME_SUFFIX_CLASSES)})")
        elif widget_class not in promised:
            problems.append(f"{name}: a {widget_class}, expected {' or '.join(sorted(promised))}")
        for attribute in sorted(uses[name]):
            if attribute in ATTRIBUTE_CLASSES and widget_class not in ATTRIBUTE_CLASSES[attribute]:
                problems.append(f"{name}.{attribute}: a {widget_class} has no {attribute}")
    return problems


def library_imports(tree: ast.AST) -> Dict[str, Tuple[str, str]]:
    """Local name -> (library module, name) for every `from BrainMetSegLib... import ...`."""
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "BrainMetSegLib":
            for alias in node.names:
                imported[alias.asname or alias.name] = (node.module, alias.name)
    return imported


def call_problems(tree: ast.AST) -> Tuple[int, List[str]]:
    """Calls of imported library callables whose arguments the callable's signature does not
    accept (a renamed keyword, one argument too many, a required one missing)."""
    imported = library_imports(tree)
    checked, problems = 0, []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported):
            continue
        if any(isinstance(arg, ast.Starred) for arg in node.args) or any(k.arg is None for k in node.keywords):
            continue
        module, name = imported[node.func.id]
        target = getattr(importlib.import_module(module), name)
        try:
            inspect.signature(target).bind(*node.args, **{keyword.arg: keyword.value for keyword in node.keywords})
        except TypeError as error:
            problems.append(f"line {node.lineno}: {module}.{name}(...): {error}")
        checked += 1
    return checked, problems


def result_attribute_problems(tree: ast.AST) -> Tuple[int, List[str]]:
    """Attributes read on the RESULT_TYPES names that their library class does not have."""
    checked, problems = 0, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in RESULT_TYPES:
            module, name = RESULT_TYPES[node.value.id]
            cls = getattr(importlib.import_module(module), name)
            fields = {field.name for field in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
            if node.attr not in fields and not hasattr(cls, node.attr):
                problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}: {module}.{name} has no {node.attr}")
            checked += 1
    return checked, problems


def module_constant(name: str):
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{MODULE_FILE.name} defines no {name}")


def pyproject_dependencies() -> List[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M)
    assert block, "pyproject.toml has no dependencies list"
    return re.findall(r'"([^"]+)"', block.group(1))


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def load_render_script():
    spec = importlib.util.spec_from_file_location("render_panel", RENDER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


# --- widgets --------------------------------------------------------------------------------

def test_every_ui_widget_the_module_uses_has_a_plausible_class(module_tree):
    uses = ui_uses(module_tree)
    classes = ui_classes()
    assert {"applyButton", "cutoffSliderWidget", "lesionTableView", "modelsDirectoryPathLineEdit"} <= set(uses)
    assert class_problems(uses, classes) == []


def test_panel_has_the_widgets_the_issue_asks_for():
    classes = ui_classes()
    counts = {cls: list(classes.values()).count(cls) for cls in set(classes.values())}
    assert counts["qMRMLNodeComboBox"] == 4
    assert classes["modelComboBox"] == "QComboBox" and classes["deviceComboBox"] == "QComboBox"
    assert classes["cutoffSliderWidget"] == "ctkSliderWidget"
    assert classes["lesionTableView"] == "qMRMLTableView"
    root = ElementTree.parse(UI_FILE).getroot()
    slider = next(w for w in root.iter("widget") if w.get("name") == "cutoffSliderWidget")
    bounds = {p.get("name"): float(p[0].text) for p in slider.findall("property") if p.get("name") in ("minimum", "maximum")}
    assert bounds == {"minimum": 0.0, "maximum": 1.0}
    device = next(w for w in root.iter("widget") if w.get("name") == "deviceComboBox")
    items = [item.find("property/string").text for item in device.findall("item")]
    assert len(items) == len(module_constant("DEVICES")) == 3  # the menu and the code's device names agree
    assert [text.split()[0] for text in items] == ["Auto", "CPU", "GPU"]
    texts = [s.text or "" for s in root.iter("string")]
    assert any("Research use only" in text and "not for diagnosis" in text for text in texts)


def test_class_check_catches_wrong_and_missing_widgets(tmp_path):
    ui = tmp_path / "Panel.ui"
    ui.write_text(
        '<ui version="4.0"><widget class="qMRMLWidget" name="Panel">'
        '<widget class="QComboBox" name="inputSelector"/>'
        '<widget class="QLabel" name="resultTableView"/>'
        '<widget class="QPlainTextEdit" name="logTextEdit"/>'
        '<widget class="QPushButton" name="goButton"/>'
        '<widget class="QLabel" name="thing"/>'
        "</widget></ui>")
    source = ("self.ui.inputSelector.currentNode()\nself.ui.resultTableView.setMRMLTableNode(t)\n"
              "self.ui.logTextEdit.setHtml(x)\nself.ui.goButton.click()\nself.ui.thing.text\nself.ui.gone.text\n")
    assert class_problems(ui_uses(ast.parse(source)), ui_classes(ui)) == [
        "gone: not in the .ui",
        "inputSelector: a QComboBox, expected qMRMLNodeComboBox",
        "inputSelector.currentNode: a QComboBox has no currentNode",
        "logTextEdit.setHtml: a QPlainTextEdit has no setHtml",
        "resultTableView: a QLabel, expected QTableView or qMRMLTableView",
        "resultTableView.setMRMLTableNode: a QLabel has no setMRMLTableNode",
        "thing: no known widget suffix (" + ", ".join(s for s, _ in NAME_SUFFIX_CLASSES) + ")",
    ]


# --- library calls -------------------------------------------------------------------------

def test_module_calls_library_functions_with_arguments_they_take(module_tree):
    checked, problems = call_problems(module_tree)
    assert checked >= 15, "the module should call the library's scene functions"
    assert problems == []


def test_module_reads_only_attributes_library_results_have(module_tree):
    checked, problems = result_attribute_problems(module_tree)
    assert checked >= 10
    assert problems == []


def test_library_call_checks_catch_a_wrong_keyword_and_a_missing_attribute():
    source = ("def f():\n"
              "    from BrainMetSegLib.scene.logic import write_to_scene\n"
              "    from BrainMetSegLib.scene.table import lesion_ras\n"
              "    write_to_scene(p, node, probability=True)\n"
              "    lesion_ras(table)\n"
              "    lesion_ras(table, 0)\n"
              "    outputs.segmentation\n"
              "    outputs.segments\n"
              "    entry.card\n")
    checked, problems = call_problems(ast.parse(source))
    assert checked == 3
    assert [problem.split(":")[0] for problem in problems] == ["line 4", "line 5"]
    assert "probability" in problems[0] and "row" in problems[1]
    checked, problems = result_attribute_problems(ast.parse(source))
    assert checked == 3
    assert problems == ["line 8: outputs.segments: BrainMetSegLib.scene.logic.SceneOutputs has no segments"]


# --- dependencies the panel installs ---------------------------------------------------------

def test_packages_offered_for_installation_are_the_project_dependencies():
    offered = module_constant("PYTHON_REQUIREMENTS")
    dependencies = pyproject_dependencies()
    by_name = {canonical(requirement_name(requirement)): requirement for requirement in dependencies}
    expected = {requirement for name, requirement in by_name.items()
                if name not in {canonical(n) for n in SLICER_PROVIDED | {"torch", "torchvision"}}}
    assert set(offered.values()) == expected
    assert by_name["torch"] == "torch" + module_constant("TORCH_REQUIREMENT")
    # each import name is provided by the distribution the requirement installs
    providers = importlib.metadata.packages_distributions()
    for import_name, requirement in offered.items():
        assert canonical(requirement_name(requirement)) in {canonical(d) for d in providers.get(import_name, [])}, \
            f"import {import_name} does not come from {requirement}"


# --- the panel picture ---------------------------------------------------------------------

def test_panel_picture_stands_in_for_every_widget_class_of_the_ui():
    render = load_render_script()
    used = set(ui_classes().values())
    custom = {cls for cls in used if not cls.startswith("Q")}
    assert custom and custom <= set(render.STAND_INS), sorted(custom - set(render.STAND_INS))
    # the transformed .ui names no Slicer/CTK class and keeps every widget name
    stand_in = ElementTree.fromstring(render.stand_in_ui(UI_FILE.read_text(encoding="utf-8")))
    classes = {widget.get("name"): widget.get("class") for widget in stand_in.iter("widget")}
    assert not {cls for cls in classes.values() if not cls.startswith("Q")}
    assert set(ui_classes()) <= set(classes)
    assert classes["cutoffSliderWidget"] == "QSlider" and classes["lesionTableView"] == "QTableWidget"


def test_panel_pictures_are_the_same_png():
    first, second = (path.read_bytes() for path in PICTURES)
    assert first == second
    with Image.open(PICTURES[0]) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 380 <= width <= 700 and height > width
