"""`brainmetseg train`: train a model on a dataset folder (CPU, one GPU, or several under torchrun).

The options and their defaults come from train_options.TrainOptions, so `--help` documents
exactly what the Python API does. A stopped run (Ctrl-C, SIGTERM, Stop in Slicer) saves a
checkpoint and exits with status 130; `--resume` continues it.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

NAME = "train"
HELP = ("Train a segmentation model (2.5D DeepLabv3, lopsided bootstrap loss by default) on a dataset; "
        "writes RUN/events.jsonl, checkpoints and the model folder RUN/model. Several GPUs: "
        "torchrun --nproc_per_node N -m BrainMetSegLib train ...")

STOPPED_EXIT = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..train_options import TrainOptions, cli_flag

    for field in dataclasses.fields(TrainOptions):
        meta = field.metadata
        flag = cli_flag(field)
        text = meta["help"]
        if isinstance(field.default, bool):
            action = "store_false" if field.default else "store_true"
            parser.add_argument(flag, dest=field.name, action=action,
                                help=f"turn off: {text}" if field.default else text)
            continue
        if field.default is not None:
            text += " (default: %(default)s)"
        parser.add_argument(flag, dest=field.name, default=field.default, type=meta["type"],
                            choices=meta["choices"], metavar=meta["metavar"], help=text,
                            required=field.name in ("dataset", "out"))


def run(args: argparse.Namespace) -> int:
    from ..train_options import TrainOptions, check_options, check_run_folder

    options = TrainOptions(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainOptions)})
    check_options(options)  # refusals before torch is imported: answers in a second, not after 10
    check_run_folder(options.normalised())
    from ..train import TrainingStopped, train

    try:
        folder = train(options)
    except TrainingStopped as stopped:
        print(str(stopped), file=sys.stderr)
        return STOPPED_EXIT
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(folder)
    return 0


def _print_summary(folder) -> None:
    from ..model_folder import read_model_config

    training = read_model_config(folder).training
    validation = training.get("validation") or {}
    ap = validation.get("ap")
    print(f"model: {folder}")
    print(f"selected epoch {training.get('selected_epoch')} of {training.get('epochs')} "
          f"({training.get('selection')}); validation AP {'n/a' if ap is None else f'{ap:.3f}'}")
    for message in training.get("collapse") or []:
        print(f"warning: {message}", file=sys.stderr)
