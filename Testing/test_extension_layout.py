"""The Slicer extension's files agree with each other and with the files on disk.

Slicer cannot be built here, so these tests read what Slicer's build would read: the CMake files
(evaluated by helpers_cmake, which reproduces CMake's globbing), the .ui files (as Qt Designer
XML), the icons (as PNG) and the module .py files (as syntax trees, since they import Slicer's
Qt bindings). A file the CMake lists name but that does not exist breaks Slicer's configure step;
a library file the lists miss is silently absent from the installed extension. Both fail here.
"""
from __future__ import annotations

import ast
import importlib.util
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
from PIL import Image

from helpers_cmake import Evaluation, evaluate, parse_commands

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("BrainMetSeg", "BrainMetSegTrain")
LIBRARY = ROOT / "BrainMetSeg" / "BrainMetSegLib"
ICON_SIZE = (128, 128)
REQUIRED_METADATA = ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def module_cmake(module: str) -> Evaluation:
    return evaluate(ROOT / module / "CMakeLists.txt")


def listed_files(evaluation: Evaluation, variable: str) -> List[str]:
    return evaluation.variables.get(variable, [])


def missing_listed_files(evaluation: Evaluation, folder: Path) -> List[str]:
    """Entries of the SCRIPTS and RESOURCES lists that name no file, as Slicer's macro checks."""
    missing = []
    for variable in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        missing += [entry for entry in listed_files(evaluation, variable) if not (folder / entry).is_file()]
    return missing


def library_files(suffix_filter) -> List[str]:
    """Files of BrainMetSegLib as paths relative to the BrainMetSeg module folder."""
    return sorted(
        path.relative_to(LIBRARY.parent).as_posix()
        for path in LIBRARY.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and suffix_filter(path)
    )


def string_value(node: Optional[ast.AST]):
    """The literal behind `"x"`, `_("x")`, `translate(context, "x")` and lists of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and node.args:
        return string_value(node.args[-1])
    if isinstance(node, ast.List):
        return [string_value(item) for item in node.elts]
    return None


def module_tree(module: str) -> ast.Module:
    path = ROOT / module / f"{module}.py"
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def classes(tree: ast.Module) -> Dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def base_names(node: ast.ClassDef) -> List[str]:
    return [base.id if isinstance(base, ast.Name) else ast.unparse(base) for base in node.bases]


def parent_attributes(module_class: ast.ClassDef) -> Dict[str, object]:
    """`self.parent.<name> = value` assignments of the module class, by name."""
    values = {}
    for node in ast.walk(module_class):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute)
                        and target.value.attr == "parent"):
                    values[target.attr] = string_value(node.value)
    return values


def ui_root(module: str) -> ElementTree.Element:
    return ElementTree.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()


def widget_texts(root: ElementTree.Element, widget_class: str) -> List[str]:
    texts = []
    for widget in root.iter("widget"):
        if widget.get("class") == widget_class:
            for prop in widget.findall("property"):
                if prop.get("name") == "text" and prop.find("string") is not None:
                    texts.append(prop.find("string").text or "")
    return texts


def load_icon_script():
    spec = importlib.util.spec_from_file_location("make_icons", ROOT / "Resources" / "make_icons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- top-level CMakeLists.txt ---------------------------------------------------------------

def test_extension_metadata_is_complete_and_says_research_use():
    evaluation = evaluate(ROOT / "CMakeLists.txt")
    metadata = {name: " ".join(evaluation.variables.get(f"EXTENSION_{name}", [])) for name in REQUIRED_METADATA}
    assert all(metadata.values()), {name: value for name, value in metadata.items() if not value}
    assert metadata["CATEGORY"] == "Segmentation"
    assert "PyTorch" in evaluation.variables["EXTENSION_DEPENDS"]
    description = metadata["DESCRIPTION"].lower()
    assert "research" in description and "not for diagnosis" in description
    for name in ("HOMEPAGE", "ICONURL", "SCREENSHOTURLS"):
        assert all(url.startswith("https://") for url in metadata[name].split()), metadata[name]
    # the icon URL points at the committed extension icon
    assert metadata["ICONURL"].endswith("/Resources/BrainMetSeg.png")
    assert (ROOT / "Resources" / "BrainMetSeg.png").is_file()


def test_extension_cmake_follows_slicer_template_order():
    commands = parse_commands((ROOT / "CMakeLists.txt").read_text(encoding="utf-8"))
    sequence = [(command.name, " ".join(command.args)) for command in commands if command.name != "set"]
    assert sequence[0][0] == "cmake_minimum_required"
    assert sequence[1] == ("project", "BrainMetSeg")
    find_slicer = sequence.index(("find_package", "Slicer REQUIRED"))
    use_file = sequence.index(("include", "${Slicer_USE_FILE}"))
    subdirectories = [index for index, (name, _) in enumerate(sequence) if name == "add_subdirectory"]
    assert find_slicer < use_file < min(subdirectories)
    assert sequence[-2:] == [("include", "${Slicer_EXTENSION_GENERATE_CONFIG}"),
                             ("include", "${Slicer_EXTENSION_CPACK}")]
    assert max(subdirectories) < len(sequence) - 2
    metadata_lines = [command.line for command in commands if command.name == "set"
                      and command.args[0].startswith("EXTENSION_")]
    find_slicer_line = next(command.line for command in commands if command.name == "find_package")
    assert max(metadata_lines) < find_slicer_line, "EXTENSION_* must be set before find_package(Slicer)"


def test_every_module_folder_is_added_and_every_added_folder_is_a_module():
    commands = parse_commands((ROOT / "CMakeLists.txt").read_text(encoding="utf-8"))
    added = {command.args[0] for command in commands if command.name == "add_subdirectory"}
    module_folders = {path.parent.name for path in ROOT.glob("*/CMakeLists.txt")
                      if "slicermacrobuildscriptedmodule" in path.read_text(encoding="utf-8").lower()}
    assert added == module_folders == set(MODULES)


# --- module CMakeLists.txt ------------------------------------------------------------------

@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_lists_existing_script_and_resources(module):
    evaluation = module_cmake(module)
    folder = ROOT / module
    assert evaluation.variables["MODULE_NAME"] == [module]
    scripts = listed_files(evaluation, "MODULE_PYTHON_SCRIPTS")
    resources = listed_files(evaluation, "MODULE_PYTHON_RESOURCES")
    assert f"{module}.py" in scripts
    assert f"Resources/Icons/{module}.png" in resources
    assert f"Resources/UI/{module}.ui" in resources
    assert missing_listed_files(evaluation, folder) == []
    # every file of the module's Resources folder is installed
    on_disk = {path.relative_to(folder).as_posix() for path in (folder / "Resources").rglob("*") if path.is_file()}
    assert on_disk <= set(resources), sorted(on_disk - set(resources))


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_builds_scripted_module_with_tests(module):
    evaluation = module_cmake(module)
    (build,) = evaluation.calls("slicerMacroBuildScriptedModule")
    raw = build.args
    assert raw[raw.index("NAME") + 1] == "${MODULE_NAME}"
    assert raw[raw.index("SCRIPTS") + 1] == "${MODULE_PYTHON_SCRIPTS}"
    assert raw[raw.index("RESOURCES") + 1] == "${MODULE_PYTHON_RESOURCES}"
    assert "WITH_GENERIC_TESTS" in raw
    (unittest,) = evaluation.calls("slicer_add_python_unittest")
    assert unittest.conditions == ("BUILD_TESTING",)
    assert evaluation.expand(unittest) == ["SCRIPT", f"{module}.py"]


def test_library_is_installed_with_the_inference_module_by_glob():
    evaluation = module_cmake("BrainMetSeg")
    scripts = set(listed_files(evaluation, "MODULE_PYTHON_SCRIPTS"))
    resources = set(listed_files(evaluation, "MODULE_PYTHON_RESOURCES"))
    library_python = library_files(lambda path: path.suffix == ".py")
    assert "BrainMetSegLib/__init__.py" in library_python
    assert set(library_python) <= scripts, sorted(set(library_python) - scripts)
    # the library list comes from globs, so files added later are never left out
    assert any(pattern.endswith("BrainMetSegLib/*.py") for patterns in evaluation.globs.values() for pattern in patterns)
    # non-Python library files are installed only from BrainMetSegLib/data, which is globbed whole
    data = library_files(lambda path: path.suffix not in (".py", ".pyc"))
    stray = [path for path in data if not path.startswith("BrainMetSegLib/data/")]
    assert stray == [], f"non-Python library files outside BrainMetSegLib/data are not installed: {stray}"
    assert set(data) <= resources, sorted(set(data) - resources)
    # the training module installs no copy of the library: it imports BrainMetSeg's
    train_scripts = listed_files(module_cmake("BrainMetSegTrain"), "MODULE_PYTHON_SCRIPTS")
    assert train_scripts == ["BrainMetSegTrain.py"]


def test_layout_checks_catch_a_missing_file_and_an_unlisted_library_file(tmp_path):
    """The checks above can fail: a listed file that is absent and a file outside a glob are seen."""
    (tmp_path / "Lib" / "sub" / "__pycache__").mkdir(parents=True)
    for name in ("Lib/__init__.py", "Lib/sub/a.py", "Lib/sub/__pycache__/a.py", "Other.py", "Mod.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "CMakeLists.txt").write_text(
        "set(MODULE_NAME Mod)\n"
        "file(GLOB_RECURSE LIB RELATIVE ${CMAKE_CURRENT_SOURCE_DIR} CONFIGURE_DEPENDS\n"
        "  ${CMAKE_CURRENT_SOURCE_DIR}/Lib/*.py)  # recursive, as CMake globs\n"
        'list(FILTER LIB EXCLUDE REGEX "__pycache__")\n'
        "set(MODULE_PYTHON_SCRIPTS ${MODULE_NAME}.py ${LIB} Gone.py)\n"
        "set(MODULE_PYTHON_RESOURCES Resources/Icons/${MODULE_NAME}.png)\n"
    )
    evaluation = evaluate(tmp_path / "CMakeLists.txt")
    assert evaluation.variables["MODULE_PYTHON_SCRIPTS"] == ["Mod.py", "Lib/__init__.py", "Lib/sub/a.py", "Gone.py"]
    assert missing_listed_files(evaluation, tmp_path) == ["Gone.py", "Resources/Icons/Mod.png"]
    assert "Other.py" not in evaluation.variables["MODULE_PYTHON_SCRIPTS"]


def test_cmake_reader_handles_quotes_escapes_and_comments():
    commands = parse_commands(
        'set(A "x # not a comment" b\\;c) # comment (with parens\n'
        "#[[ bracket\ncomment ]]\n"
        'if(BUILD_TESTING)\n  foo(${A} "q\\"uote")\nendif()\n'
    )
    assert [command.name for command in commands] == ["set", "if", "foo", "endif"]
    assert commands[0].args == ["A", "x # not a comment", "b\\;c"]
    assert commands[2].args == ["${A}", 'q"uote'] and commands[2].conditions == ("BUILD_TESTING",)
    assert commands[2].line == 5
    with pytest.raises(ValueError, match="unterminated"):
        parse_commands('set(A "open)\n')


# --- .ui files --------------------------------------------------------------------------------

@pytest.mark.parametrize("module", MODULES)
def test_ui_file_is_a_qmrmlwidget_with_inputs_and_disclaimer(module):
    root = ui_root(module)
    assert root.tag == "ui" and root.get("version") == "4.0"
    assert root.findtext("class") == module
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == module
    assert "Inputs" in widget_texts(root, "ctkCollapsibleButton")
    assert any("not for diagnosis" in text.lower() for text in widget_texts(root, "QLabel"))
    names = [widget.get("name") for widget in root.iter("widget")]
    assert len(names) == len(set(names)), "widget names must be unique: childWidgetVariables maps them"
    # every non-Qt class is declared, or Qt's loader cannot build it
    declared = {custom.findtext("class") for custom in root.iter("customwidget")}
    used = {widget.get("class") for widget in root.iter("widget")}
    assert {name for name in used if not name.startswith("Q")} <= declared
    # node selectors get the scene from the top-level widget
    selectors = {widget.get("name") for widget in root.iter("widget") if widget.get("class") == "qMRMLNodeComboBox"}
    connected = {connection.findtext("receiver") for connection in root.iter("connection")
                 if connection.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert selectors and selectors <= connected


@pytest.mark.parametrize("module", MODULES)
def test_module_code_and_ui_agree(module):
    """Every `self.ui.<name>` exists in the .ui and every bound parameter exists in the wrapper class."""
    root = ui_root(module)
    widget_names = {widget.get("name") for widget in root.iter("widget")}
    tree = module_tree(module)
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"}
    assert used and used <= widget_names, sorted(used - widget_names)
    bound = set()
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound.add(prop.findtext("string"))
    wrapper = classes(tree)[f"{module}ParameterNode"]
    fields = {node.target.id for node in wrapper.body if isinstance(node, ast.AnnAssign)}
    assert bound and bound <= fields, sorted(bound - fields)


# --- module .py files -------------------------------------------------------------------------

@pytest.mark.parametrize("module", MODULES)
def test_module_file_has_the_scripted_module_classes(module):
    found = classes(module_tree(module))
    expected_bases = {
        module: "ScriptedLoadableModule",
        f"{module}Widget": "ScriptedLoadableModuleWidget",
        f"{module}Logic": "ScriptedLoadableModuleLogic",
        f"{module}Test": "ScriptedLoadableModuleTest",
    }
    for name, base in expected_bases.items():
        assert name in found, f"{module}.py lacks class {name}"
        assert base in base_names(found[name])
    assert "parameterNodeWrapper" in [ast.unparse(decorator) for decorator in found[f"{module}ParameterNode"].decorator_list]


@pytest.mark.parametrize("module", MODULES)
def test_module_metadata_says_research_use_and_cites_the_paper(module):
    metadata = parent_attributes(classes(module_tree(module))[module])
    assert metadata["categories"] == ["Segmentation"]
    assert metadata["title"] and metadata["contributors"]
    assert "not for diagnosis" in metadata["helpText"].lower()
    acknowledgement = metadata["acknowledgementText"]
    assert "Yi" in acknowledgement and "MIDL" in acknowledgement and "2020" in acknowledgement


@pytest.mark.parametrize("module", MODULES)
def test_widget_loads_its_ui_file(module):
    setup = next(node for node in classes(module_tree(module))[f"{module}Widget"].body
                 if isinstance(node, ast.FunctionDef) and node.name == "setup")
    source = ast.unparse(setup)
    assert f"slicer.util.loadUI(self.resourcePath('UI/{module}.ui'))" in source
    assert "slicer.util.childWidgetVariables(" in source
    assert "setMRMLScene(slicer.mrmlScene)" in source


@pytest.mark.parametrize("module", MODULES)
def test_self_test_runs_real_checks(module):
    """runTest calls every test_ method, and each of those asserts something."""
    test_class = classes(module_tree(module))[f"{module}Test"]
    methods = {node.name: node for node in test_class.body if isinstance(node, ast.FunctionDef)}
    tests = {name for name in methods if name.startswith("test_")}
    called = {node.func.attr for node in ast.walk(methods["runTest"])
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert tests and tests <= called, sorted(tests - called)
    for name in tests:
        asserts = [node for node in ast.walk(methods[name]) if isinstance(node, ast.Call)
                   and isinstance(node.func, ast.Attribute) and node.func.attr.startswith("assert")]
        assert len(asserts) >= 2, f"{module}Test.{name} checks too little"


# --- icons ------------------------------------------------------------------------------------

ICONS = ("Resources/BrainMetSeg.png", "BrainMetSeg/Resources/Icons/BrainMetSeg.png",
         "BrainMetSegTrain/Resources/Icons/BrainMetSegTrain.png")


@pytest.mark.parametrize("relative", ICONS)
def test_icon_is_a_128_pixel_png_drawn_by_the_icon_script(relative):
    path = ROOT / relative
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == ICON_SIZE and image.mode == "RGBA"
        committed = np.asarray(image, dtype=np.float64)
    drawn = np.asarray(load_icon_script().render_icons()[relative], dtype=np.float64)
    # the committed PNG is what Resources/make_icons.py draws (small tolerance across Pillow versions)
    assert np.abs(committed - drawn).mean() < 1.0
    alpha = committed[..., 3]
    assert 0.3 < (alpha > 0).mean() < 0.9, "an icon has a transparent background around an opaque drawing"


def test_module_icons_differ_so_the_modules_can_be_told_apart():
    inference = np.asarray(Image.open(ROOT / ICONS[1]), dtype=np.float64)
    training = np.asarray(Image.open(ROOT / ICONS[2]), dtype=np.float64)
    assert np.abs(inference - training).mean() > 2.0


def test_readme_section_names_the_module_folders():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for phrase in ("Additional module paths", "BrainMetSeg", "BrainMetSegTrain", "PyTorch", "not for diagnosis"):
        assert phrase in text
    assert re.search(r"cmake .*-DSlicer_DIR=", text)
