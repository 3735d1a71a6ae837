"""Each module panel's code agrees with its .ui file and with the library it calls.

Slicer's Qt is not available here, so the module files are read as syntax trees. test_extension_layout
checks that every `self.ui.<name>` exists in the .ui; this file checks, for each panel, that each one
is a widget of a class that has what the code uses on it and emits the signals the code connects
to, that every library function the module calls takes the arguments it passes, that the
attributes the module reads on library results exist, that the menus agree with the values the
code and the library expect, that the packages it offers to install are the project's
dependencies, and that the panel picture is drawn from every widget class the .ui uses.
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
RENDER_SCRIPT = ROOT / "Resources" / "render_panel.py"


@dataclasses.dataclass(frozen=True)
class Panel:
    module: str
    result_types: Dict[str, Tuple[str, str]]
    """Local names the module gives to library results -> the library class each holds; every
    attribute read on them must exist there."""
    stand_ins: Dict[str, str]
    """Widgets the picture must draw with a particular Qt class (name -> class)."""
    min_calls: int
    min_attributes: int

    @property
    def module_file(self) -> Path:
        return ROOT / self.module / f"{self.module}.py"

    @property
    def ui_file(self) -> Path:
        return ROOT / self.module / "Resources" / "UI" / f"{self.module}.ui"

    @property
    def pictures(self) -> Tuple[Path, Path]:
        return (ROOT / "docs" / "img" / f"{self.module.lower()}-panel.png",
                ROOT / "Resources" / "Screenshots" / f"{self.module}.png")


MODEL_ENTRY = ("BrainMetSegLib.scene.models", "ModelEntry")
LESION = ("BrainMetSegLib.lesions", "Lesion")
PANELS = {
    "BrainMetSeg": Panel(
        "BrainMetSeg",
        {"entry": MODEL_ENTRY, "outputs": ("BrainMetSegLib.scene.logic", "SceneOutputs"), "lesion": LESION},
        {"cutoffSliderWidget": "QSlider", "lesionTableView": "QTableWidget"}, min_calls=15, min_attributes=10),
    "BrainMetSegTrain": Panel(
        "BrainMetSegTrain",
        {"entry": MODEL_ENTRY, "lesion": LESION, "exported": ("BrainMetSegLib.scene.export", "ExportedCase"),
         "summary": ("BrainMetSegLib.dataset_summary", "DatasetSummary"),
         "choice": ("BrainMetSegLib.jobs", "LossChoice"), "job": ("BrainMetSegLib.jobs", "Job"),
         "spec": ("BrainMetSegLib.jobs", "JobSpec"), "status": ("BrainMetSegLib.job_status", "JobStatus"),
         "history": ("BrainMetSegLib.job_status", "History"),
         "review": ("BrainMetSegLib.scene.review_session", "ReviewSession"),
         "request": ("BrainMetSegLib.scene.review_session", "ReviewRequest")},
        {"trainingPlotWidget": "QLabel", "datasetPathLineEdit": "QLineEdit", "missedLesionsListWidget": "QListWidget"},
        min_calls=25, min_attributes=40),
}
INFERENCE = PANELS["BrainMetSeg"]
TRAINING = PANELS["BrainMetSegTrain"]

NAME_SUFFIX_CLASSES: Tuple[Tuple[str, Set[str]], ...] = (
    ("CollapsibleButton", {"ctkCollapsibleButton"}),
    ("RadioButton", {"QRadioButton"}),
    ("Selector", {"qMRMLNodeComboBox"}),
    ("PathLineEdit", {"ctkPathLineEdit"}),
    ("LineEdit", {"QLineEdit"}),
    ("SpinBox", {"QSpinBox", "QDoubleSpinBox", "ctkDoubleSpinBox"}),
    ("ListWidget", {"QListWidget"}),
    ("PlotWidget", {"qMRMLPlotWidget"}),
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
    "addItem": {"QComboBox", "ctkComboBox", "QListWidget"},
    "setItemData": {"QComboBox", "ctkComboBox"},
    "currentIndex": {"QComboBox", "ctkComboBox"},
    "currentText": {"QComboBox", "ctkComboBox"},
    "click": {"QPushButton", "QToolButton", "ctkPushButton", "QCheckBox", "QRadioButton"},
    "checked": {"QCheckBox", "ctkCheckBox", "QPushButton", "QRadioButton"},
    "value": {"QProgressBar", "ctkSliderWidget", "QSlider", "QSpinBox", "QDoubleSpinBox"},
    "format": {"QProgressBar"},
    "text": {"QLabel", "QPushButton", "QToolButton", "QCheckBox", "QRadioButton", "QLineEdit", "ctkCollapsibleButton"},
    "currentRow": {"QListWidget"},
    "setCurrentRow": {"QListWidget"},
    "item": {"QListWidget"},
    "count": {"QListWidget", "QComboBox", "ctkComboBox"},
    "itemText": {"QComboBox", "ctkComboBox"},
    "findText": {"QComboBox", "ctkComboBox"},
    "removeItem": {"QComboBox", "ctkComboBox"},
    "moveCursor": {"QPlainTextEdit", "QTextEdit"},
    "setMRMLPlotViewNode": {"qMRMLPlotWidget"},
}
"""Attributes (properties, methods) the module uses on a widget -> the classes that have them."""

SIGNAL_CLASSES: Dict[str, Set[str]] = {
    "clicked(bool)": {"QPushButton", "QToolButton", "ctkPushButton", "QCheckBox", "QRadioButton"},
    "toggled(bool)": {"QPushButton", "QCheckBox", "QRadioButton"},
    "currentIndexChanged(int)": {"QComboBox", "ctkComboBox"},
    "currentPathChanged(QString)": {"ctkPathLineEdit"},
    "textChanged(QString)": {"QLineEdit"},
    "valueChanged(double)": {"ctkSliderWidget", "QDoubleSpinBox"},
    "valueChanged(int)": {"QSpinBox", "QSlider"},
    "currentRowChanged(int)": {"QListWidget"},
    "selectionChanged()": {"qMRMLTableView"},
}
"""Qt signals (as `connect` names them) -> the widget classes that emit them: a connection to a
signal the widget lacks fails only at run time, inside Slicer."""

SLICER_PROVIDED = {"numpy", "SimpleITK"}
"""pyproject dependencies that Slicer's Python ships, so the module never installs them."""


def ui_classes(path: Path = INFERENCE.ui_file) -> Dict[str, str]:
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


def signal_problems(tree: ast.AST, classes: Dict[str, str]) -> Tuple[int, List[str]]:
    """`self.ui.<name>.connect("signal(...)", ...)` calls whose widget class does not emit that signal."""
    checked, problems = 0, []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
                and isinstance(node.func.value, ast.Attribute) and isinstance(node.func.value.value, ast.Attribute)
                and node.func.value.value.attr == "ui" and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        name, signal = node.func.value.attr, node.args[0].value
        widget_class = classes.get(name)
        if signal not in SIGNAL_CLASSES:
            problems.append(f"line {node.lineno}: {name}: unknown signal {signal}")
        elif widget_class not in SIGNAL_CLASSES[signal]:
            problems.append(f"line {node.lineno}: {name}: a {widget_class} emits no {signal}")
        checked += 1
    return checked, problems


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
            signature = inspect.signature(target)
        except ValueError:  # a class built on a builtin (BrainMetSegError) states no signature to check
            continue
        try:
            signature.bind(*node.args, **{keyword.arg: keyword.value for keyword in node.keywords})
        except TypeError as error:
            problems.append(f"line {node.lineno}: {module}.{name}(...): {error}")
        checked += 1
    return checked, problems


def instance_attributes(cls: type) -> Set[str]:
    """Attributes a class's methods assign on `self` (e.g. set in __init__), besides its class attributes."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return set()
    return set(re.findall(r"\bself\.(\w+)\s*(?::[^=\n]+)?=(?!=)", source))


def result_attribute_problems(tree: ast.AST, result_types: Dict[str, Tuple[str, str]]) -> Tuple[int, List[str]]:
    """Attributes read on the `result_types` names that their library class does not have."""
    checked, problems = 0, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in result_types:
            module, name = result_types[node.value.id]
            cls = getattr(importlib.import_module(module), name)
            fields = {field.name for field in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
            if node.attr not in fields and not hasattr(cls, node.attr) and node.attr not in instance_attributes(cls):
                problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}: {module}.{name} has no {node.attr}")
            checked += 1
    return checked, problems


def module_constant(name: str, panel: Panel = INFERENCE):
    tree = ast.parse(panel.module_file.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{panel.module_file.name} defines no {name}")


def ui_widget(name: str, panel: Panel) -> ElementTree.Element:
    return next(w for w in ElementTree.parse(panel.ui_file).getroot().iter("widget") if w.get("name") == name)


def widget_property(widget: ElementTree.Element, name: str):
    """A property's value as Python: text, number, bool, or None when the .ui leaves it at Qt's default."""
    prop = next((p for p in widget.findall("property") if p.get("name") == name), None)
    if prop is None:
        return None
    value = prop[0]
    if value.tag in ("number", "double"):
        return float(value.text)
    if value.tag == "bool":
        return value.text == "true"
    return value.text


def combo_items(name: str, panel: Panel) -> List[str]:
    return [item.find("property/string").text for item in ui_widget(name, panel).findall("item")]


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


@pytest.fixture(scope="module", params=sorted(PANELS), ids=str)
def panel(request) -> Panel:
    return PANELS[request.param]


def parse_module(panel: Panel) -> ast.Module:
    return ast.parse(panel.module_file.read_text(encoding="utf-8"), filename=str(panel.module_file))


@pytest.fixture(scope="module")
def module_tree(panel) -> ast.Module:
    return parse_module(panel)


# --- widgets --------------------------------------------------------------------------------

REQUIRED_USES = {
    "BrainMetSeg": {"applyButton", "cutoffSliderWidget", "lesionTableView", "modelsDirectoryPathLineEdit"},
    "BrainMetSegTrain": {"addCaseButton", "findMissedButton", "launchButton", "jobsListWidget", "trainingPlotWidget",
                         "stopButton", "resumeButton", "copyCommandButton", "useModelButton"},
}


def test_every_ui_widget_the_module_uses_has_a_plausible_class(panel, module_tree):
    uses = ui_uses(module_tree)
    classes = ui_classes(panel.ui_file)
    assert REQUIRED_USES[panel.module] <= set(uses)
    assert class_problems(uses, classes) == []


def test_every_signal_the_module_connects_to_exists(panel, module_tree):
    checked, problems = signal_problems(module_tree, ui_classes(panel.ui_file))
    assert checked >= 10
    assert problems == []


def test_signal_check_catches_a_signal_the_widget_lacks():
    source = ('self.ui.goButton.connect("clicked(bool)", f)\nself.ui.nameLineEdit.connect("currentIndexChanged(int)", f)\n'
              'self.ui.jobsListWidget.connect("itemSelected()", f)\n')
    classes = {"goButton": "QPushButton", "nameLineEdit": "QLineEdit", "jobsListWidget": "QListWidget"}
    checked, problems = signal_problems(ast.parse(source), classes)
    assert checked == 3
    assert problems == ["line 2: nameLineEdit: a QLineEdit emits no currentIndexChanged(int)",
                        "line 3: jobsListWidget: unknown signal itemSelected()"]


def test_panel_has_the_widgets_the_issue_asks_for():
    classes = ui_classes(INFERENCE.ui_file)
    counts = {cls: list(classes.values()).count(cls) for cls in set(classes.values())}
    assert counts["qMRMLNodeComboBox"] == 4
    assert classes["modelComboBox"] == "QComboBox" and classes["deviceComboBox"] == "QComboBox"
    assert classes["cutoffSliderWidget"] == "ctkSliderWidget"
    assert classes["lesionTableView"] == "qMRMLTableView"
    root = ElementTree.parse(INFERENCE.ui_file).getroot()
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

def test_module_calls_library_functions_with_arguments_they_take(panel, module_tree):
    checked, problems = call_problems(module_tree)
    assert checked >= panel.min_calls, "the module should call the library's functions"
    assert problems == []


def test_module_reads_only_attributes_library_results_have(panel, module_tree):
    checked, problems = result_attribute_problems(module_tree, panel.result_types)
    assert checked >= panel.min_attributes
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
    checked, problems = result_attribute_problems(ast.parse(source), INFERENCE.result_types)
    assert checked == 3
    assert problems == ["line 8: outputs.segments: BrainMetSegLib.scene.logic.SceneOutputs has no segments"]
    # attributes a library class sets on self count (Job.run), others do not
    job_source = "job.run\njob.name\njob.runs\n"
    checked, problems = result_attribute_problems(ast.parse(job_source), TRAINING.result_types)
    assert checked == 3
    assert problems == ["line 3: job.runs: BrainMetSegLib.jobs.Job has no runs"]


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

def test_panel_picture_stands_in_for_every_widget_class_of_the_ui(panel):
    render = load_render_script()
    used = set(ui_classes(panel.ui_file).values())
    custom = {cls for cls in used if not cls.startswith("Q")}
    assert custom and custom <= set(render.STAND_INS), sorted(custom - set(render.STAND_INS))
    # the transformed .ui names no Slicer/CTK class and keeps every widget name
    stand_in = ElementTree.fromstring(render.stand_in_ui(panel.ui_file.read_text(encoding="utf-8")))
    classes = {widget.get("name"): widget.get("class") for widget in stand_in.iter("widget")}
    assert not {cls for cls in classes.values() if not cls.startswith("Q")}
    assert set(ui_classes(panel.ui_file)) <= set(classes)
    assert {name: classes[name] for name in panel.stand_ins} == panel.stand_ins
    assert render.ui_file(panel.module) == panel.ui_file and render.outputs(panel.module) == panel.pictures


def test_panel_pictures_are_the_same_png(panel):
    first, second = (path.read_bytes() for path in panel.pictures)
    assert first == second
    with Image.open(panel.pictures[0]) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 380 <= width <= 700 and height > width


# --- the training panel ----------------------------------------------------------------------

def test_training_panel_has_the_widgets_the_issue_asks_for():
    classes = ui_classes(TRAINING.ui_file)
    selectors = {name for name, cls in classes.items() if cls == "qMRMLNodeComboBox"}
    assert selectors == {"t1PreSelector", "t1GdSelector", "bravoSelector", "flairSelector", "annotationSelector"}
    annotation_types = ui_widget("annotationSelector", TRAINING).find("property[@name='nodeTypes']/stringlist")
    assert [s.text for s in annotation_types] == ["vtkMRMLSegmentationNode"]
    expected = {
        # export
        "datasetPathLineEdit": "ctkPathLineEdit", "partialRadioButton": "QRadioButton",
        "completeRadioButton": "QRadioButton", "splitComboBox": "QComboBox", "caseIdLineEdit": "QLineEdit",
        "addCaseButton": "QPushButton", "datasetSummaryTextEdit": "QPlainTextEdit",
        # review
        "reviewModelComboBox": "QComboBox", "findMissedButton": "QPushButton",
        "missedLesionsListWidget": "QListWidget", "acceptButton": "QPushButton", "rejectButton": "QPushButton",
        # training
        "lossComboBox": "QComboBox", "alphaSpinBox": "QDoubleSpinBox", "betaSpinBox": "QDoubleSpinBox",
        "backboneComboBox": "QComboBox", "epochsSpinBox": "QSpinBox", "batchSizeSpinBox": "QSpinBox",
        "learningRateSpinBox": "QDoubleSpinBox", "initModelComboBox": "QComboBox", "censorModeComboBox": "QComboBox",
        "censorRateSpinBox": "QDoubleSpinBox", "gpusComboBox": "QComboBox", "runsFolderPathLineEdit": "ctkPathLineEdit",
        "launchButton": "QPushButton", "jobsListWidget": "QListWidget", "jobProgressBar": "QProgressBar",
        "trainingPlotWidget": "qMRMLPlotWidget", "jobLogTextEdit": "QPlainTextEdit", "stopButton": "QPushButton",
        "resumeButton": "QPushButton", "copyCommandButton": "QPushButton", "useModelButton": "QPushButton",
    }
    assert {name: classes.get(name) for name in expected} == expected
    # a quick annotation is partial unless the annotator says otherwise
    assert widget_property(ui_widget("partialRadioButton", TRAINING), "checked") is True
    assert widget_property(ui_widget("datasetSummaryTextEdit", TRAINING), "readOnly") is True
    # the plot gets the scene from the panel, as the node selectors do
    receivers = {c.findtext("receiver") for c in ElementTree.parse(TRAINING.ui_file).getroot().iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert selectors | {"trainingPlotWidget"} == receivers


def test_training_menus_match_the_code_and_the_library():
    from BrainMetSegLib.dataset import SPLITS
    from BrainMetSegLib.train_options import BACKBONE_CHOICES, CENSOR_MODES, LOSS_CHOICES

    losses = module_constant("LOSSES", TRAINING)
    assert sorted(losses) == sorted(LOSS_CHOICES) and len(combo_items("lossComboBox", TRAINING)) == len(losses)
    assert [text.split()[0] for text in combo_items("lossComboBox", TRAINING)] == ["Lopsided", "Bootstrap", "Weighted"]
    assert losses[:2] == ("lopsided", "bootstrap") and losses[2] == "ce"
    backbones = module_constant("BACKBONES", TRAINING)
    assert backbones[0] is None and sorted(backbones[1:]) == sorted(BACKBONE_CHOICES)
    assert [text.split()[0] for text in combo_items("backboneComboBox", TRAINING)] == \
        ["Auto", "ResNet-50", "ResNet-101", "MobileNetV3-Large"]
    censoring = module_constant("CENSOR_MODES", TRAINING)
    assert censoring == CENSOR_MODES and len(combo_items("censorModeComboBox", TRAINING)) == len(censoring)
    gpus = module_constant("GPU_CHOICES", TRAINING)
    labels = combo_items("gpusComboBox", TRAINING)
    assert len(labels) == len(gpus) and labels[0].startswith("Auto") and labels[1] == "CPU"
    assert [int(text.split()[0]) for text in labels[2:]] == list(gpus[2:]) and gpus[:2] == (None, 0)
    assert tuple(combo_items("splitComboBox", TRAINING)) == SPLITS
    assert combo_items("initModelComboBox", TRAINING)[0].startswith("Random weights")


def test_training_form_starts_at_the_trainers_defaults():
    """The form's numbers are those `brainmetseg train` uses when the option is not given, so a job
    launched without touching them is the command line's default job."""
    from BrainMetSegLib.train_options import TrainOptions

    defaults = TrainOptions()
    for name, option in (("alphaSpinBox", "alpha"), ("betaSpinBox", "beta"), ("epochsSpinBox", "epochs"),
                         ("batchSizeSpinBox", "batch_size"), ("learningRateSpinBox", "lr"),
                         ("censorRateSpinBox", "censor_rate")):
        widget = ui_widget(name, TRAINING)
        assert widget_property(widget, "value") == pytest.approx(getattr(defaults, option)), name
        assert widget_property(widget, "minimum") <= getattr(defaults, option) <= widget_property(widget, "maximum")
    # the batch size cannot go below what the trainer accepts, nor β to 0
    assert widget_property(ui_widget("batchSizeSpinBox", TRAINING), "minimum") == 2
    assert widget_property(ui_widget("betaSpinBox", TRAINING), "minimum") > 0
