"""Scratch nodes: Slicer's segmentation import and export work through labelmap volume nodes.

Those calls also add display nodes and colour tables of their own; everything added to the
scene while the context is open is removed when it closes, so an export or an accepted
lesion leaves the user's scene as it was, apart from the intended result (which must not be
a new node).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Set


def _node_ids(scene) -> Set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


@contextlib.contextmanager
def temporary_nodes(scene) -> Iterator[None]:
    """Remove every node added to `scene` inside the block."""
    before = _node_ids(scene)
    try:
        yield
    finally:
        for node_id in _node_ids(scene) - before:
            node = scene.GetNodeByID(node_id)
            if node is not None:
                scene.RemoveNode(node)
