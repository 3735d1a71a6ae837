"""BrainMetSegTrain: turn (possibly incomplete) annotations into datasets and models (research use only).

GUI wiring only. The library it drives, BrainMetSegLib, is installed with the BrainMetSeg module
(hence the dependency below) and is imported inside methods, so that this module loads at
Slicer start-up even before torch and the library's other dependencies are installed.
"""
import logging
import tempfile

import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


class BrainMetSegTrain(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BrainMetSeg Training")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["BrainMetSeg"]
        self.parent.contributors = ["BrainMetSeg contributors"]
        self.parent.helpText = _(
            "For annotators and researchers: export cases whose lesion labels may be incomplete to a "
            "dataset, review lesions a model found that the annotation misses, and train models with the "
            "lopsided bootstrap loss on this computer or a GPU server. Trained models appear in the "
            "BrainMetSeg module.<br><br><b>Research use only, not for diagnosis.</b> Models trained here "
            "have not been validated for clinical use."
        )
        self.parent.acknowledgementText = _(
            "The training method is that of D. Yi, E. Grøvik, M. Iv, E. Tong, G. Zaharchuk and D. Rubin, "
            "\"Brain Metastasis Segmentation Network Trained with Robustness to Annotations with "
            "Multiple False Negatives\", Medical Imaging with Deep Learning (MIDL) 2020: the lopsided "
            "bootstrap loss lets annotations that miss lesions still train a sensitive model."
        )


@parameterNodeWrapper
class BrainMetSegTrainParameterNode:
    """One case to export or review: the four sequences (named as BrainMetSegLib.roles.ROLES) and
    the annotator's segmentation."""

    t1_pre: vtkMRMLScalarVolumeNode
    t1_gd: vtkMRMLScalarVolumeNode
    bravo: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode
    annotation: vtkMRMLSegmentationNode


class BrainMetSegTrainWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BrainMetSegTrain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects its mrmlSceneChanged signal to every node selector's setMRMLScene.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = BrainMetSegTrainLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # Stop following the parameter node while hidden; enter() reconnects.
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode):
        """Bind the selectors to the parameter node (the .ui names each one's parameter)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateStatus)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateStatus)
            self._updateStatus()

    def _updateStatus(self, caller=None, event=None):
        """Say which inputs are still missing, so the user knows what the panel waits for."""
        missing = self.logic.missingInputs(self._parameterNode)
        if missing:
            self.ui.statusLabel.text = _("Select: {inputs}.").format(inputs=", ".join(missing))
        else:
            self.ui.statusLabel.text = _("The four sequences and the annotation are selected.")


class BrainMetSegTrainLogic(ScriptedLoadableModuleLogic):
    """Scene-side logic; datasets and training are BrainMetSegLib's, so they also run without Slicer."""

    def getParameterNode(self):
        return BrainMetSegTrainParameterNode(super().getParameterNode())

    @staticmethod
    def missingInputs(parameterNode):
        """Titles of the inputs not selected yet: sequences in channel order, then the annotation."""
        from BrainMetSegLib.roles import ROLE_TITLES, ROLES

        missing = [ROLE_TITLES[role] for role in ROLES if getattr(parameterNode, role) is None]
        if parameterNode.annotation is None:
            missing.append(_("annotation (segmentation)"))
        return missing


class BrainMetSegTrainTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest through slicer_add_python_unittest)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_missing_inputs()
        self.setUp()
        self.test_library_writes_and_reads_a_dataset()

    def test_missing_inputs(self):
        """The annotation is required besides the four sequences, and reported last."""
        parameterNode = BrainMetSegTrainLogic().getParameterNode()
        self.assertEqual(len(BrainMetSegTrainLogic.missingInputs(parameterNode)), 5)
        for role in ("t1_pre", "t1_gd", "bravo", "flair"):
            setattr(parameterNode, role, slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", role))
        self.assertEqual(len(BrainMetSegTrainLogic.missingInputs(parameterNode)), 1)
        parameterNode.annotation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
        self.assertEqual(BrainMetSegTrainLogic.missingInputs(parameterNode), [])

    def test_library_writes_and_reads_a_dataset(self):
        """The library installed with BrainMetSeg is importable from this module and round-trips a case."""
        import numpy as np

        from BrainMetSegLib.dataset import read_dataset, write_case
        from BrainMetSegLib.roles import ROLES
        from BrainMetSegLib.volumes import Volume, make_affine

        affine = make_affine((0.9, 0.9, 1.0), origin=(-10.0, 12.0, 3.0))
        brain = np.zeros((12, 12, 6), dtype=np.float32)
        brain[2:10, 2:10, 1:5] = 100.0
        label = np.zeros(brain.shape, dtype=np.uint8)
        label[5:7, 5:7, 2:4] = 1
        volumes = {role: Volume(brain * (index + 1), affine) for index, role in enumerate(ROLES)}
        with tempfile.TemporaryDirectory() as root:
            write_case(root, "Mets_001", volumes, label=Volume(label, affine))
            case = read_dataset(root).get("Mets_001").load()
        self.assertEqual(case.images.shape, (len(ROLES),) + brain.shape)
        self.assertEqual(int(case.label.sum()), int(label.sum()))
        np.testing.assert_allclose(case.affine, affine, atol=1e-4)
        logging.info("BrainMetSegTrain self-test: dataset round trip of Mets_001 passed")
