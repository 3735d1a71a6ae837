"""A reader for the small subset of CMake that the extension's CMakeLists.txt files use.

Slicer cannot be built here, so the layout tests evaluate the CMake files themselves: commands
are tokenised as CMake does (quoted arguments, escapes, comments, nested parentheses), and
`set`, `file(GLOB|GLOB_RECURSE ...)` and `list(FILTER ...)` are evaluated so that globbed file
lists can be compared with the files on disk. Anything else is recorded, not evaluated.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", ";": "\\;"}
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


@dataclass
class Command:
    name: str                   # lower case, as CMake command names are case-insensitive
    args: List[str]             # raw arguments, variables not yet expanded
    quoted: List[bool]          # whether each argument was quoted (quoted ones are never list-split)
    line: int
    conditions: Tuple[str, ...] = ()  # the if() conditions enclosing the command, outermost first


def parse_commands(text: str) -> List[Command]:
    """Tokenise a CMake file into commands; raises ValueError on unbalanced syntax."""
    commands: List[Command] = []
    conditions: List[str] = []
    position, line, length = 0, 1, len(text)
    while position < length:
        char = text[position]
        if char == "\n":
            line += 1
            position += 1
        elif char.isspace():
            position += 1
        elif char == "#":
            end = _skip_comment(text, position)
            line += text.count("\n", position, end)
            position = end
        else:
            match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*\(").match(text, position)
            if match is None:
                raise ValueError(f"line {line}: expected a command, found {text[position:position + 20]!r}")
            name = match.group(0).rstrip("( \t\n").lower()
            start_line = line
            line += match.group(0).count("\n")
            args, quoted, position, line = _parse_arguments(text, match.end(), line)
            commands.append(Command(name, args, quoted, start_line, tuple(conditions)))
            if name == "if":
                conditions.append(" ".join(args))
            elif name == "endif":
                if not conditions:
                    raise ValueError(f"line {start_line}: endif() without if()")
                conditions.pop()
    if conditions:
        raise ValueError(f"unterminated if({conditions[-1]})")
    return commands


def _skip_comment(text: str, position: int) -> int:
    bracket = re.compile(r"#\[(=*)\[").match(text, position)
    if bracket:
        end = text.find("]" + bracket.group(1) + "]", bracket.end())
        if end < 0:
            raise ValueError("unterminated bracket comment")
        return end + len(bracket.group(1)) + 2
    end = text.find("\n", position)
    return len(text) if end < 0 else end


def _parse_arguments(text: str, position: int, line: int) -> Tuple[List[str], List[bool], int, int]:
    args: List[str] = []
    quoted: List[bool] = []
    depth = 0
    current: Optional[List[str]] = None
    while True:
        if position >= len(text):
            raise ValueError(f"line {line}: unterminated command")
        char = text[position]
        if char == '"' and current is None:
            value, position, line = _parse_quoted(text, position + 1, line)
            args.append(value)
            quoted.append(True)
            continue
        if char == "#" and current is None:
            end = _skip_comment(text, position)
            line += text.count("\n", position, end)
            position = end
            continue
        if char.isspace() or (char == ")" and depth == 0):
            if current is not None:
                args.append("".join(current))
                quoted.append(False)
                current = None
            if char == "\n":
                line += 1
            position += 1
            if char == ")":
                return args, quoted, position, line
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "\\" and position + 1 < len(text):
            current = (current or []) + [_ESCAPES.get(text[position + 1], text[position + 1])]
            position += 2
            continue
        current = (current or []) + [char]
        position += 1


def _parse_quoted(text: str, position: int, line: int) -> Tuple[str, int, int]:
    value: List[str] = []
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            nxt = text[position + 1]
            if nxt == "\n":
                line += 1
            else:
                value.append(_ESCAPES.get(nxt, nxt))
            position += 2
            continue
        if char == '"':
            return "".join(value), position + 1, line
        if char == "\n":
            line += 1
        value.append(char)
        position += 1
    raise ValueError(f"line {line}: unterminated quoted argument")


@dataclass
class Evaluation:
    variables: Dict[str, List[str]] = field(default_factory=dict)
    commands: List[Command] = field(default_factory=list)
    globs: Dict[str, List[str]] = field(default_factory=dict)   # variable -> glob expressions that filled it

    def calls(self, name: str) -> List[Command]:
        return [command for command in self.commands if command.name == name.lower()]

    def expand(self, command: Command) -> List[str]:
        """Arguments with variables expanded; unquoted arguments split as CMake lists."""
        values: List[str] = []
        for arg, was_quoted in zip(command.args, command.quoted):
            expanded = self.substitute(arg)
            values.extend([expanded] if was_quoted else [item for item in expanded.split(";") if item])
        return values

    def substitute(self, value: str) -> str:
        previous = None
        while previous != value:
            previous = value
            value = _VARIABLE.sub(lambda match: ";".join(self.variables.get(match.group(1), [])), value)
        return value


def evaluate(path: Path, initial: Optional[Dict[str, str]] = None) -> Evaluation:
    """Run the supported commands of a CMakeLists.txt, with CMAKE_CURRENT_SOURCE_DIR its folder."""
    evaluation = Evaluation(commands=parse_commands(path.read_text(encoding="utf-8")))
    evaluation.variables["CMAKE_CURRENT_SOURCE_DIR"] = [str(path.parent)]
    for name, value in (initial or {}).items():
        evaluation.variables[name] = [value]
    for command in evaluation.commands:
        args = evaluation.expand(command)
        if command.name == "set" and args:
            evaluation.variables[args[0]] = args[1:]
        elif command.name == "file" and args and args[0] in ("GLOB", "GLOB_RECURSE"):
            variable, relative, patterns = _glob_arguments(args[1:])
            evaluation.variables[variable] = cmake_glob(patterns, relative, recurse=args[0] == "GLOB_RECURSE")
            evaluation.globs[variable] = patterns
        elif command.name == "list" and len(args) >= 5 and args[0] == "FILTER" and args[3] == "REGEX":
            regex = re.compile(args[4])
            keep = args[2] == "INCLUDE"
            items = evaluation.variables.get(args[1], [])
            evaluation.variables[args[1]] = [item for item in items if bool(regex.search(item)) == keep]
    return evaluation


def _glob_arguments(args: List[str]) -> Tuple[str, Optional[Path], List[str]]:
    variable, rest = args[0], args[1:]
    relative: Optional[Path] = None
    patterns: List[str] = []
    index = 0
    while index < len(rest):
        if rest[index] == "RELATIVE":
            relative = Path(rest[index + 1])
            index += 2
        elif rest[index] == "LIST_DIRECTORIES":
            index += 2
        elif rest[index] in ("CONFIGURE_DEPENDS", "FOLLOW_SYMLINKS"):
            index += 1
        else:
            patterns.append(rest[index])
            index += 1
    return variable, relative, patterns


def cmake_glob(patterns: List[str], relative: Optional[Path], recurse: bool) -> List[str]:
    """Files matching CMake globbing expressions: with recursion, `dir/*.py` matches below dir too."""
    found = set()
    for pattern in patterns:
        folder, name = Path(pattern).parent, Path(pattern).name
        if any(char in str(folder) for char in "*?["):
            raise ValueError(f"{pattern}: wildcards in folder names are not supported by this reader")
        candidates = folder.rglob("*") if recurse else folder.glob("*")
        for candidate in candidates:
            if candidate.is_file() and fnmatch.fnmatchcase(candidate.name, name):
                found.add(candidate)
    if relative is None:
        return sorted(str(path) for path in found)
    return sorted(path.relative_to(relative).as_posix() for path in found)
