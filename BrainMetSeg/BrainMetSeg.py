"""BrainMetSeg: brain metastases on four MRI sequences, one segment per lesion (research use only).

GUI wiring only. Everything else lives in BrainMetSegLib, installed next to this file and
imported inside methods: Slicer imports this file at start-up, before torch and the library's
other dependencies may be installed, and the module must still load to offer installing them.
"""
import logging

import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
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


class BrainMetSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BrainMetSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["BrainMetSeg contributors"]
        self.parent.helpText = _(
            "Segments brain metastases on four co-registered, skull-stripped MRI sequences "
            "(T1 pre-contrast, T1 post-Gd spin echo, post-Gd 3D gradient echo such as BRAVO or MPRAGE, "
            "and FLAIR) with a 2.5D DeepLabv3 network. Every lesion becomes its own segment with a "
            "confidence.<br><br><b>Research use only, not for diagnosis.</b> Results have not been "
            "validated for clinical use; a model trained on synthetic data says so wherever it is shown."
        )
        self.parent.acknowledgementText = _(
            "The method is that of D. Yi, E. Grøvik, M. Iv, E. Tong, G. Zaharchuk and D. Rubin, "
            "\"Brain Metastasis Segmentation Network Trained with Robustness to Annotations with "
            "Multiple False Negatives\", Medical Imaging with Deep Learning (MIDL) 2020: a 2.5D "
            "DeepLabv3 trained with the lopsided bootstrap loss, so that annotations which miss "
            "lesions still train a sensitive model."
        )


@parameterNodeWrapper
class BrainMetSegParameterNode:
    """The input sequences. Attribute names are BrainMetSegLib.roles.ROLES, the channel order."""

    t1_pre: vtkMRMLScalarVolumeNode
    t1_gd: vtkMRMLScalarVolumeNode
    bravo: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode


class BrainMetSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BrainMetSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects its mrmlSceneChanged signal to every node selector's setMRMLScene.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = BrainMetSegLogic()

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
        """Say which sequences are still missing, so the user knows what the panel waits for."""
        missing = self.logic.missingInputs(self._parameterNode)
        if missing:
            self.ui.statusLabel.text = _("Select: {inputs}.").format(inputs=", ".join(missing))
        else:
            self.ui.statusLabel.text = _("All four sequences are selected.")


class BrainMetSegLogic(ScriptedLoadableModuleLogic):
    """Scene-side logic; the computation itself is BrainMetSegLib's, so it also runs without Slicer."""

    def getParameterNode(self):
        return BrainMetSegParameterNode(super().getParameterNode())

    @staticmethod
    def missingInputs(parameterNode):
        """Titles of the sequences not selected yet, in channel order."""
        from BrainMetSegLib.roles import ROLE_TITLES, ROLES

        return [ROLE_TITLES[role] for role in ROLES if getattr(parameterNode, role) is None]


class BrainMetSegTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest through slicer_add_python_unittest)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_missing_inputs()
        self.setUp()
        self.test_library_makes_a_synthetic_case()

    def test_missing_inputs(self):
        """The parameter node holds the four roles and reports the unselected ones in channel order."""
        from BrainMetSegLib.roles import ROLE_TITLES

        parameterNode = BrainMetSegLogic().getParameterNode()
        self.assertEqual(len(BrainMetSegLogic.missingInputs(parameterNode)), 4)
        parameterNode.bravo = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "bravo")
        parameterNode.t1_pre = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "t1_pre")
        self.assertEqual(BrainMetSegLogic.missingInputs(parameterNode), [ROLE_TITLES["t1_gd"], ROLE_TITLES["flair"]])

    def test_library_makes_a_synthetic_case(self):
        """The library bundled with the module imports inside Slicer and its synthetic generator runs."""
        import numpy as np

        from BrainMetSegLib.roles import ROLES
        from BrainMetSegLib.synth import make_case

        case = make_case(seed=0, small=True)
        self.assertEqual(case.images.shape[0], len(ROLES))
        self.assertEqual(case.label.shape, case.images.shape[1:])
        self.assertTrue(np.all(np.isfinite(case.images)))
        self.assertGreater(int(case.label.sum()), 0)
        logging.info("BrainMetSeg self-test: synthetic case %s, %d lesion voxels", case.case_id, int(case.label.sum()))
