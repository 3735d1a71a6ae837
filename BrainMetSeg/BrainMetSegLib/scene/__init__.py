"""Code that talks to the MRML scene (imports `slicer` and `vtk`, never `qt`).

The Slicer modules' GUIs call these functions; pytest runs them against real MRML classes
from slicer-core. One concept per file, e.g. volume nodes <-> Volume (`volume_nodes`), the
inference inputs (`inputs`), the lesion segmentation (`segmentation`) and table (`table`),
and the run itself, split into a compute part and a scene-writing part (`logic`).
"""
