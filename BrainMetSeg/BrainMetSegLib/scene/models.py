"""Entries of the Slicer module's model selector, read from the models directory.

Only model.json is read (model_folder.list_models), so the selector fills before torch is
installed. A model trained on synthetic data is flagged so the GUI can mark it in red; the
card is the same text the CLI's `models` command prints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

from ..model_card import card_text
from ..model_folder import list_models

PathLike = Union[str, "os.PathLike[str]"]



@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    card: str
    synthetic: bool
    operating_point: float
    backbone: str

    @property
    def label(self) -> str:
        """The selector's text: the name, and a plain warning for synthetic-data models."""
        return f"{self.name} (synthetic data)" if self.synthetic else self.name


def model_entries(directory: Optional[PathLike] = None) -> List[ModelEntry]:
    """One entry per readable model folder in `directory` (default: the models directory,
    $BRAINMETSEG_MODELS or ~/.brainmetseg/models), sorted by folder name."""
    return [ModelEntry(name=config.name, path=folder, card=card_text(config),
                       synthetic=config.synthetic_training_data, operating_point=config.operating_point,
                       backbone=config.backbone)
            for folder, config in list_models(directory)]
