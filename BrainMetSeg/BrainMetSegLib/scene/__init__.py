"""Code that talks to the MRML scene (imports `slicer` and `vtk`, never `qt`).

The Slicer module's GUI calls these functions; pytest runs them against real MRML classes
from slicer-core. Each file holds one concept: volume nodes <-> Volume (`volume_nodes`), the
module's inputs (`inputs`), the lesion segmentation (`segmentation`), the lesion table
(`table`), subject hierarchy placement (`hierarchy`), the model selector's entries (`models`)
and the run itself, split into a compute part and a scene-writing part (`logic`).
"""
