"""DESIGN's split between GUI, scene and computation, enforced on the source.

- BrainMetSegLib never imports qt/ctk or uses slicer.app (it also runs as a command-line tool);
- only BrainMetSegLib/scene/ imports `slicer`, and nothing else in the library imports scene/,
  so numpy/torch code never pulls in MRML;
- the module files import only slicer/qt/ctk/vtk and the standard library at top level: Slicer
  imports them at start-up, when torch and the library's dependencies may be missing;
- what Slicer loads at start-up imports without torch (checked in a fresh interpreter);
- the code runs on Python 3.9 (Slicer 5.4-5.8), although the tests run on a newer Python.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "BrainMetSeg" / "BrainMetSegLib"
SCENE = LIBRARY / "scene"
MODULE_FILES = (ROOT / "BrainMetSeg" / "BrainMetSeg.py", ROOT / "BrainMetSegTrain" / "BrainMetSegTrain.py")
MODULE_TOP_LEVEL_ALLOWED = {"slicer", "qt", "ctk", "vtk"}
GUI_TOP_NAMES = {"qt", "ctk", "PythonQt"}
GUI_SLICER_UTIL = {"mainWindow", "loadUI", "childWidgetVariables", "findChild", "findChildren", "messageBox",
                   "pythonShell"}
STARTUP_MODULES = ("BrainMetSegLib", "BrainMetSegLib.roles", "BrainMetSegLib.model_card",
                   "BrainMetSegLib.model_folder")
"""What the module files import while Slicer starts (plus everything in scene/, added below)."""

# Standard-library names added after Python 3.9, which the tests' newer Python would accept.
NEWER_THAN_39 = {
    "typing": {"TypeAlias", "ParamSpec", "Concatenate", "TypeGuard", "Self", "Never", "LiteralString",
               "Required", "NotRequired", "Unpack", "TypeVarTuple", "assert_never", "assert_type",
               "reveal_type", "dataclass_transform", "override", "is_typeddict", "get_overloads"},
    "itertools": {"pairwise", "batched"},
    "datetime": {"UTC"},
    "enum": {"StrEnum", "ReprEnum", "verify"},
    "contextlib": {"chdir", "aclosing"},
}
NEWER_MODULES = {"tomllib", "zoneinfo_tzdata"}
NEWER_KEYWORDS = {"zip": {"strict"}, "dataclass": {"slots", "kw_only", "match_args"},
                  "dataclasses.dataclass": {"slots", "kw_only", "match_args"}}
RUNTIME_TYPE_NAMES = {"int", "float", "str", "bytes", "bool", "list", "dict", "tuple", "set", "frozenset", "type"}


def library_files() -> List[Path]:
    files = sorted(path for path in LIBRARY.rglob("*.py") if "__pycache__" not in path.parts)
    assert files, f"no Python files under {LIBRARY}"
    return files


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(tree: ast.AST, package: Optional[str] = None) -> Iterator[Tuple[str, int]]:
    """(absolute module name, line) of every import, relative ones resolved against `package`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level and package:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, node.lineno
            for alias in node.names:
                yield f"{module}.{alias.name}", node.lineno


def package_of(path: Path) -> str:
    """Dotted package of a library file, used to resolve its relative imports."""
    return ".".join(path.relative_to(LIBRARY.parent).with_suffix("").parts[:-1])


def gui_uses(tree: ast.AST, package: Optional[str] = None) -> List[str]:
    """Places where code reaches for Qt: qt/ctk imports, slicer.app, slicer.q* classes, GUI helpers."""
    found: List[Tuple[int, str]] = []
    for module, line in imported_modules(tree, package):
        if module.split(".")[0] in GUI_TOP_NAMES or module == "slicer.app" or module.startswith("slicer.q"):
            found.append((line, f"imports {module}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "slicer":
            if node.attr == "app" or node.attr.startswith("q"):
                found.append((node.lineno, f"uses slicer.{node.attr}"))
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "slicer"
                and node.value.attr == "util"
                and (node.attr in GUI_SLICER_UTIL or node.attr.endswith("Display"))):
            found.append((node.lineno, f"uses slicer.util.{node.attr}"))
    return [f"line {line}: {text}" for line, text in sorted(found)]


def slicer_imports(tree: ast.AST, package: Optional[str] = None) -> List[str]:
    """Imports of `slicer` (MRML) or of the library's scene package, which imports it."""
    found = set()
    for module, line in imported_modules(tree, package):
        if module.split(".")[0] in ("slicer", "slicer_core") or module.startswith("BrainMetSegLib.scene"):
            found.add((line, f"imports {module}"))
    return [f"line {line}: {text}" for line, text in sorted(found)]


def top_level_imports(tree: ast.Module) -> List[Tuple[str, int]]:
    """Imports executed when the file is imported: module body, including its if/try blocks."""
    found: List[Tuple[str, int]] = []
    pending: List[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(("." * node.level + (node.module or ""), node.lineno))
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    pending += child.body if isinstance(child, ast.ExceptHandler) else [child]
    return sorted(found, key=lambda item: item[1])


def is_standard_library(name: str) -> bool:
    top = name.split(".")[0]
    if top in sys.builtin_module_names or top == "__future__":
        return True
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return spec is not None
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    origin = Path(spec.origin).resolve()
    return stdlib in origin.parents and "site-packages" not in origin.parts


def annotation_nodes(tree: ast.AST) -> set:
    """ids of nodes inside annotations, which `from __future__ import annotations` never evaluates."""
    inside = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
            arguments = node.args
            for arg in arguments.posonlyargs + arguments.args + arguments.kwonlyargs + [arguments.vararg, arguments.kwarg]:
                if arg is not None:
                    annotations.append(arg.annotation)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for annotation in annotations:
            if annotation is not None:
                inside.update(id(child) for child in ast.walk(annotation))
    return inside


def python39_problems(source: str, filename: str, needs_future_annotations: bool) -> List[str]:
    """Syntax and standard-library features newer than 3.9 that a 3.11 test run would not notice."""
    try:
        tree = ast.parse(source, filename=filename, feature_version=(3, 9))
    except SyntaxError as error:
        return [f"line {error.lineno}: not Python 3.9 syntax ({error.msg})"]
    problems = []
    skip = annotation_nodes(tree)
    has_future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                     and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
    if needs_future_annotations and skip and not has_future:
        problems.append("has annotations but no `from __future__ import annotations` (3.9 evaluates them)")
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in skip:
            operands = (node.left, node.right)
            if any((isinstance(o, ast.Constant) and o.value is None)
                   or (isinstance(o, ast.Name) and o.id in RUNTIME_TYPE_NAMES) for o in operands):
                problems.append(f"line {node.lineno}: `X | Y` type union evaluated at run time (3.10+)")
        if isinstance(node, ast.ImportFrom) and node.module in NEWER_THAN_39:
            for alias in node.names:
                if alias.name in NEWER_THAN_39[node.module]:
                    problems.append(f"line {node.lineno}: {node.module}.{alias.name} is newer than Python 3.9")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.attr in NEWER_THAN_39.get(node.value.id, ()):
            problems.append(f"line {node.lineno}: {node.value.id}.{node.attr} is newer than Python 3.9")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"line {node.lineno}: module {name} is newer than Python 3.9"
                         for name in names if name.split(".")[0] in NEWER_MODULES]
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            for keyword in node.keywords:
                if keyword.arg in NEWER_KEYWORDS.get(called, ()):
                    problems.append(f"line {node.lineno}: {called}({keyword.arg}=...) is newer than Python 3.9")
    return problems


def imports_that_load(modules: Sequence[str], watched: Sequence[str], cwd: Path,
                      extra_path: Optional[Path] = None) -> Dict[str, List[str]]:
    """Import `modules` in order in one fresh interpreter: which import first loaded which of `watched`.

    One interpreter for all (importing MRML costs seconds); a watched module that an earlier
    import loaded is charged to that earlier import only.
    """
    code = (
        "import importlib, json, sys\n"
        "loaded = {}\n"
        f"watched = {list(watched)!r}\n"
        f"for name in {list(modules)!r}:\n"
        "    before = {m for m in watched if m in sys.modules}\n"
        "    importlib.import_module(name)\n"
        "    new = sorted(m for m in watched if m in sys.modules and m not in before)\n"
        "    if new:\n"
        "        loaded[name] = new\n"
        "print(json.dumps(loaded))\n"
    )
    paths = [str(ROOT / "BrainMetSeg")] + ([str(extra_path)] if extra_path else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"importing {modules} failed:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def startup_modules() -> List[str]:
    """STARTUP_MODULES plus the scene package and its modules (MRML code the GUI imports)."""
    names = list(STARTUP_MODULES)
    for path in sorted(SCENE.rglob("*.py")) if SCENE.is_dir() else []:
        if "__pycache__" not in path.parts:
            parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# --- the split ------------------------------------------------------------------------------

def test_library_never_reaches_for_qt():
    problems = {}
    for path in library_files():
        found = gui_uses(parse(path), package_of(path))
        if found:
            problems[relative(path)] = found
    assert problems == {}


def test_only_scene_imports_slicer():
    problems = {}
    for path in library_files():
        if SCENE in path.parents:
            continue
        found = slicer_imports(parse(path), package_of(path))
        if found:
            problems[relative(path)] = found
    assert problems == {}


@pytest.mark.parametrize("path", MODULE_FILES, ids=lambda path: path.name)
def test_module_files_import_only_slicer_qt_ctk_vtk_at_top_level(path):
    imports = top_level_imports(parse(path))
    names = {name.split(".")[0] for name, _ in imports}
    assert "slicer" in names
    forbidden = [f"line {line}: {name}" for name, line in imports
                 if name.startswith(".") or (name.split(".")[0] not in MODULE_TOP_LEVEL_ALLOWED
                                             and not is_standard_library(name))]
    assert forbidden == [], f"{path.name} imports at top level: {forbidden}"


@pytest.mark.parametrize("path", MODULE_FILES, ids=lambda path: path.name)
def test_module_files_use_names_the_library_has(path):
    """The module files (and their self-tests, which only run inside Slicer) import what exists."""
    missing = []
    imported = 0
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "BrainMetSegLib":
            library_module = importlib.import_module(node.module)
            for alias in node.names:
                imported += 1
                if not hasattr(library_module, alias.name):
                    missing.append(f"line {node.lineno}: {node.module}.{alias.name}")
    assert imported > 0
    assert missing == []


# --- Python 3.9 -------------------------------------------------------------------------------

def test_library_and_module_files_are_python_39():
    problems = {}
    for path in library_files():
        found = python39_problems(path.read_text(encoding="utf-8"), str(path), needs_future_annotations=True)
        if found:
            problems[relative(path)] = found
    for path in MODULE_FILES:
        # module files keep their annotations evaluated: Slicer's parameterNodeWrapper reads them
        found = python39_problems(path.read_text(encoding="utf-8"), str(path), needs_future_annotations=False)
        if found:
            problems[relative(path)] = found
    assert problems == {}


# --- start-up without torch -------------------------------------------------------------------

def test_startup_modules_import_without_torch(tmp_path):
    modules = startup_modules()
    assert set(STARTUP_MODULES) <= set(modules)
    assert imports_that_load(modules, ["torch", "torchvision"], cwd=tmp_path) == {}


# --- the checks themselves can fail -----------------------------------------------------------

def test_rules_flag_violations_in_sample_code():
    gui = ast.parse("import qt\nfrom ctk import ctkSliderWidget\nw = slicer.app.layoutManager()\n"
                    "c = slicer.qMRMLNodeComboBox()\nslicer.util.errorDisplay('x')\nslicer.util.arrayFromVolume(n)\n")
    assert gui_uses(gui) == ["line 1: imports qt", "line 2: imports ctk", "line 2: imports ctk.ctkSliderWidget",
                             "line 3: uses slicer.app", "line 4: uses slicer.qMRMLNodeComboBox",
                             "line 5: uses slicer.util.errorDisplay"]
    mrml = ast.parse("def f():\n    import slicer.util\nfrom .scene import segments\nfrom . import scene\n")
    assert slicer_imports(mrml, "BrainMetSegLib") == [
        "line 2: imports slicer.util", "line 3: imports BrainMetSegLib.scene",
        "line 3: imports BrainMetSegLib.scene.segments", "line 4: imports BrainMetSegLib.scene"]
    assert slicer_imports(ast.parse("from .volumes import Volume\nimport numpy\n"), "BrainMetSegLib") == []
    module = ast.parse("import os\nimport slicer\ntry:\n    import torch\nexcept ImportError:\n    pass\n"
                       "def f():\n    import BrainMetSegLib\n")
    assert top_level_imports(module) == [("os", 1), ("slicer", 2), ("torch", 4)]
    assert is_standard_library("logging") and is_standard_library("xml.etree") and not is_standard_library("numpy")


def test_python39_check_flags_newer_code():
    newer = (
        "from typing import TypeAlias\n"
        "def f(x: int | None) -> list[int]:\n"
        "    y = int | None\n"
        "    return list(zip(x, x, strict=True))\n"
        "match = 1\n"
    )
    assert python39_problems(newer, "newer.py", needs_future_annotations=True) == [
        "has annotations but no `from __future__ import annotations` (3.9 evaluates them)",
        "line 1: typing.TypeAlias is newer than Python 3.9",
        "line 3: `X | Y` type union evaluated at run time (3.10+)",
        "line 4: zip(strict=...) is newer than Python 3.9",
    ]
    (problem,) = python39_problems("match x:\n    case 1:\n        pass\n", "m.py", True)
    assert "not Python 3.9 syntax" in problem
    fine = "from __future__ import annotations\ndef f(x: int | None, flags=1 | 2) -> None:\n    return None\n"
    assert python39_problems(fine, "fine.py", needs_future_annotations=True) == []


def test_startup_probe_names_the_import_that_loads_a_watched_module(tmp_path):
    (tmp_path / "heavy_probe.py").write_text("")
    (tmp_path / "lazy_probe.py").write_text("def f():\n    import heavy_probe\n")
    (tmp_path / "eager_probe.py").write_text("import heavy_probe\n")
    (tmp_path / "later_probe.py").write_text("import heavy_probe\n")
    found = imports_that_load(["lazy_probe", "eager_probe", "later_probe"], ["heavy_probe"], cwd=tmp_path,
                              extra_path=tmp_path)
    assert found == {"eager_probe": ["heavy_probe"]}
