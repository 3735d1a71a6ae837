"""Subcommands of the `brainmetseg` CLI, one module each.

Each module exposes NAME, HELP, add_arguments(parser) and run(args) -> int. Modules are
imported only when the CLI starts, so heavy imports (torch) stay inside their run().
"""
from __future__ import annotations

COMMAND_MODULES = (
    "demo",
    "lesions",
    "evaluate",
    "check",
    "import_brainmetshare",
    "predict",
    "censor",
    "train",
    "synth",
    "experiment",
)
