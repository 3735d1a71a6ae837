"""BrainMetSeg: brain metastases on four MRI sequences, one segment per lesion (research use only).

GUI wiring only. Everything else lives in BrainMetSegLib, installed next to this file and
imported inside methods: Slicer imports this file at start-up, before torch and the library's
other dependencies may be installed, and the module must still load to offer installing them.

A run never freezes the GUI: the voxels are copied out of the scene on the main thread, the
library's `compute` runs in a worker thread that only records progress in a shared object, a
timer on the main thread shows that progress, and the results are written to the scene on the
main thread (`write_to_scene`), all at once. Slicer's main thread keeps Python's interpreter
lock while it waits in the Qt event loop, so the timer also sleeps briefly on every tick to let
the worker run (the pattern of Slicer's SimpleFilters). A thread rather than a subprocess: the
inputs and results (a few volumes) never pass through files, the model stays loaded between
studies, and torch computes with the lock released. The price is that a long library call that
holds the lock (a large resampling) delays the panel's Python until it returns; the views keep
drawing meanwhile.
"""
import html
import importlib
import importlib.util
import logging
import os
import threading
import time
import traceback

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
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

MODELS_DIRECTORY_SETTING = "BrainMetSeg/ModelsDirectory"
MODEL_SETTING = "BrainMetSeg/Model"
DEVICE_SETTING = "BrainMetSeg/Device"
CSV_DIRECTORY_SETTING = "BrainMetSeg/TableDirectory"

DEVICES = ("auto", "cpu", "cuda")
"""Device names of the device menu's entries, in the .ui's order."""

TORCH_REQUIREMENT = ">=2.0"

PYTHON_REQUIREMENTS = {
    "scipy": "scipy>=1.8",
    "nibabel": "nibabel>=4.0",
    "safetensors": "safetensors>=0.4",
    "cc3d": "connected-components-3d>=3.12",
    "nrrd": "pynrrd>=1.0",
    "matplotlib": "matplotlib>=3.5",
    "tqdm": "tqdm>=4.60",
    "psutil": "psutil>=5.9",
    "PIL": "Pillow>=9.0",
}
"""Import name -> pip requirement: pyproject.toml's dependencies other than torch/torchvision
(installed through the PyTorch extension) and numpy/SimpleITK (part of Slicer)."""

POLL_INTERVAL_MS = 40
WORKER_SLICE_S = 0.025
"""Each timer tick sleeps this long, handing Python's interpreter lock to the worker thread;
the rest of the tick (and the time between ticks) is the GUI's."""
AUTO_FILL_DELAY_MS = 300
"""Wait after a node is added before guessing the inputs: a volume or a DICOM series is added
in several steps, and its name is final only after them."""

PROBABILITY_OPACITY = 0.4


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


# ------------------------------------------------------------------------------ dependencies

def missingPythonPackages():
    """pip requirements of the packages the library needs that Slicer's Python lacks; torch and
    torchvision come first (looked up without importing anything)."""
    missing = [name for name in ("torch", "torchvision") if importlib.util.find_spec(name) is None]
    missing += [requirement for name, requirement in PYTHON_REQUIREMENTS.items()
                if importlib.util.find_spec(name) is None]
    return missing


def installPythonDependencies():
    """Install what missingPythonPackages lists, after the user agrees. True when everything is there.

    torch goes through the PyTorch extension when it is installed (it picks the build matching
    the NVIDIA driver, or a CPU build), else pip; the rest through pip. One question for all.
    """
    missing = missingPythonPackages()
    if not missing:
        return True
    needsTorch = any(name in ("torch", "torchvision") for name in missing)
    others = [requirement for requirement in missing if requirement not in ("torch", "torchvision")]
    message = _("BrainMetSeg needs these Python packages, which are not installed in Slicer yet:\n\n{packages}\n\n"
                "They will be downloaded and installed now{torch}. This can take several minutes and the "
                "application will not respond meanwhile. Install them?").format(
        packages="\n".join(missing),
        torch=_(" (PyTorch is about 1-3 GB)") if needsTorch else "")
    if not slicer.util.confirmOkCancelDisplay(message, windowTitle=_("BrainMetSeg: install Python packages")):
        return False
    try:
        with slicer.util.WaitCursor():
            if needsTorch:
                if not _installTorch():
                    return False
            if others:
                slicer.util.pip_install(" ".join(others))
    except Exception as error:
        logging.error(traceback.format_exc())
        slicer.util.errorDisplay(_("Installing the Python packages failed: {error}\n\nRestart Slicer and try again; "
                                   "if it fails again, install them from the Python console with "
                                   "slicer.util.pip_install.").format(error=error))
        return False
    importlib.invalidate_caches()
    still = missingPythonPackages()
    if still:
        slicer.util.errorDisplay(_("These packages are still missing after installing: {packages}. "
                                   "Restart Slicer and try again.").format(packages=", ".join(still)))
        return False
    return True


def _installTorch():
    """torch and torchvision, through the PyTorch extension when it is present. False if it declined."""
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.pip_install(f"torch{TORCH_REQUIREMENT} torchvision")
        return True
    # the user has just agreed above, so the extension does not ask again
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                          torchVersionRequirement=TORCH_REQUIREMENT)
    return torch is not None


# ------------------------------------------------------------------------------ parameters

@parameterNodeWrapper
class BrainMetSegParameterNode:
    """The inputs (attribute names are BrainMetSegLib.roles.ROLES, the channel order), the
    output options, and the last run's results, which the panel shows and the cut-off filters."""

    t1_pre: vtkMRMLScalarVolumeNode
    t1_gd: vtkMRMLScalarVolumeNode
    bravo: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode
    probabilityMap: bool = True
    segmentation: vtkMRMLSegmentationNode
    lesionTable: vtkMRMLTableNode
    probability: vtkMRMLScalarVolumeNode
    cutoff: float = 0.5


# ------------------------------------------------------------------------------ widget

class BrainMetSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._models = []
        self._run = None
        self._runReference = None
        self._runTimer = None
        self._autoFillTimer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BrainMetSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects its mrmlSceneChanged signal to every node selector's setMRMLScene. The
        # lesion table view gets no scene on purpose: with a scene and no table view node it
        # empties itself after every batch import (loading a study), and it needs none to show a table.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = BrainMetSegLogic()

        self._runTimer = qt.QTimer()
        self._runTimer.setInterval(POLL_INTERVAL_MS)
        self._runTimer.connect("timeout()", self.onRunTimer)
        self._autoFillTimer = qt.QTimer()
        self._autoFillTimer.setSingleShot(True)
        self._autoFillTimer.setInterval(AUTO_FILL_DELAY_MS)
        self._autoFillTimer.connect("timeout()", self.autoFillInputs)

        self.ui.autoFillButton.connect("clicked(bool)", self.onAutoFillButton)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshModels)
        self.ui.modelsDirectoryPathLineEdit.connect("currentPathChanged(QString)", self.onModelsDirectoryChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.probabilityMapCheckBox.connect("toggled(bool)", self.onProbabilityMapToggled)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cutoffSliderWidget.connect("valueChanged(double)", self.onCutoffChanged)
        self.ui.lesionTableView.connect("selectionChanged()", self.onLesionSelectionChanged)
        self.ui.saveTableButton.connect("clicked(bool)", self.onSaveTableButton)

        settings = qt.QSettings()
        device = settings.value(DEVICE_SETTING, DEVICES[0])
        wasBlocked = self.ui.deviceComboBox.blockSignals(True)
        self.ui.deviceComboBox.currentIndex = DEVICES.index(device) if device in DEVICES else 0
        self.ui.deviceComboBox.blockSignals(wasBlocked)
        wasBlocked = self.ui.modelsDirectoryPathLineEdit.blockSignals(True)
        self.ui.modelsDirectoryPathLineEdit.currentPath = modelsDirectory()
        self.ui.modelsDirectoryPathLineEdit.blockSignals(wasBlocked)
        self.refreshModels()
        # after the panel is shown: the first look at the GPU imports torch, which takes seconds
        qt.QTimer.singleShot(0, self.updateDeviceInfo)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onNodeAdded)

        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        if self._run is not None:
            self._run.cancel()
        if self._runTimer is not None:
            self._runTimer.stop()
        if self._autoFillTimer is not None:
            self._autoFillTimer.stop()

    def enter(self):
        self.initializeParameterNode()
        # A model handed off by BrainMetSegTrain (or copied in by hand) shows up on entering.
        self.refreshModels()

    def exit(self):
        # Stop following the parameter node while hidden; enter() reconnects.
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        if self._run is not None:
            self._run.cancel()
            self._log(_("Scene closed: the run is cancelled."))
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self.autoFillInputs()

    def setParameterNode(self, inputParameterNode):
        """Bind the selectors to the parameter node (the .ui names each one's parameter)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGui)
            self.updateGui()

    # --- inputs --------------------------------------------------------------------------

    def onNodeAdded(self, caller=None, event=None):
        if self._parameterNode is not None:
            self._autoFillTimer.start()

    def autoFillInputs(self):
        """Fill the empty selectors from the volumes' names; a choice already made is kept."""
        if self._parameterNode is None or self._run is not None:
            return
        notes = self.logic.autoFill(self._parameterNode)
        self.ui.inputNotesLabel.text = "\n".join(f"{title}: {note}" for title, note in notes)
        self.ui.inputNotesLabel.visible = bool(notes)

    def onAutoFillButton(self):
        self.logic.clearInputs(self._parameterNode)
        self.autoFillInputs()

    # --- model and device --------------------------------------------------------------

    def onModelsDirectoryChanged(self, path):
        qt.QSettings().setValue(MODELS_DIRECTORY_SETTING, path)
        self.refreshModels()

    def refreshModels(self):
        """List the model folders of the models directory, keeping the selected model if it is still there."""
        from BrainMetSegLib.scene.models import model_entries

        previous = self._currentModel()
        wanted = previous.name if previous is not None else qt.QSettings().value(MODEL_SETTING, "")
        self._models = model_entries(modelsDirectory())
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for index, entry in enumerate(self._models):
            combo.addItem(entry.label)
            combo.setItemData(index, entry.card, qt.Qt.ToolTipRole)
            if entry.synthetic:
                combo.setItemData(index, qt.QBrush(qt.QColor("#c00000")), qt.Qt.ForegroundRole)
        names = [entry.name for entry in self._models]
        combo.currentIndex = names.index(wanted) if wanted in names else (0 if names else -1)
        combo.blockSignals(wasBlocked)
        self.onModelChanged()

    def _currentModel(self):
        index = self.ui.modelComboBox.currentIndex
        return self._models[index] if 0 <= index < len(self._models) else None

    def onModelChanged(self, index=None):
        from BrainMetSegLib.model_card import SYNTHETIC_WARNING

        entry = self._currentModel()
        synthetic = entry is not None and entry.synthetic
        self.ui.modelWarningLabel.visible = synthetic
        self.ui.modelComboBox.setStyleSheet("QComboBox { color: #c00000; }" if synthetic else "")
        if entry is None:
            self.ui.modelCardTextEdit.setPlainText(_("No model in {folder}.").format(folder=modelsDirectory()))
        else:
            qt.QSettings().setValue(MODEL_SETTING, entry.name)
            lines = []
            for line in entry.card.rstrip("\n").split("\n"):
                text = html.escape(line)
                if line == SYNTHETIC_WARNING:
                    text = f'<span style="color:#c00000; font-weight:bold;">{text}</span>'
                lines.append(text)
            self.ui.modelCardTextEdit.setHtml("<br>".join(lines))
        self.updateGui()

    def _currentDevice(self):
        index = self.ui.deviceComboBox.currentIndex
        return DEVICES[index] if 0 <= index < len(DEVICES) else DEVICES[0]

    def onDeviceChanged(self, index):
        qt.QSettings().setValue(DEVICE_SETTING, self._currentDevice())
        self.updateDeviceInfo()

    def updateDeviceInfo(self):
        """Name the device the network would run on (the GPU's name); torch only once it is installed."""
        if importlib.util.find_spec("torch") is None:
            self.ui.deviceInfoLabel.text = _("PyTorch is installed when you first press Apply.")
            return
        self.ui.deviceInfoLabel.text = self.logic.deviceDescription(self._currentDevice())

    # --- state of the panel ----------------------------------------------------------

    def updateGui(self, caller=None, event=None):
        """Apply's state and the status line (what is missing), and the results section."""
        parameterNode = self._parameterNode
        if parameterNode is None:
            return
        running = self._run is not None
        problems = self.logic.inputProblems(parameterNode)
        if self._currentModel() is None:
            problems.append(_("put a model folder in {folder} (or choose another models folder)").format(
                folder=modelsDirectory()))
        if running:
            self.ui.statusLabel.text = _("Segmenting… press Cancel to stop; the scene changes only when it finishes.")
        elif problems:
            self.ui.statusLabel.text = _("To run: {problems}.").format(problems="; ".join(problems))
        else:
            self.ui.statusLabel.text = _("Ready: press Apply.")
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.enabled = (running and not self._run.cancelRequested) or (not running and not problems)
        for section in (self.ui.inputsCollapsibleButton, self.ui.modelCollapsibleButton,
                        self.ui.outputCollapsibleButton):
            section.enabled = not running
        self._updateResults()

    def _updateResults(self):
        parameterNode = self._parameterNode
        segmentation, table = parameterNode.segmentation, parameterNode.lesionTable
        available = segmentation is not None and table is not None
        self.ui.resultsCollapsibleButton.enabled = available
        shownTable = self.ui.lesionTableView.mrmlTableNode()
        if (shownTable.GetID() if shownTable else None) != (table.GetID() if table else None):
            self.ui.lesionTableView.setMRMLTableNode(table)
        slider = self.ui.cutoffSliderWidget
        if abs(slider.value - parameterNode.cutoff) > 1e-9:
            wasBlocked = slider.blockSignals(True)
            slider.value = parameterNode.cutoff
            slider.blockSignals(wasBlocked)
        if available:
            shown, total = self.logic.shownLesions(table, parameterNode.cutoff)
            self.ui.shownLesionsLabel.text = _("{shown} of {total} lesions shown (confidence ≥ {cutoff:.2f}).").format(
                shown=shown, total=total, cutoff=parameterNode.cutoff)
        else:
            self.ui.shownLesionsLabel.text = _("No result yet: press Apply.")
            self.ui.resultWarningLabel.text = ""

    def _log(self, message):
        logging.info("BrainMetSeg: %s", message)
        self.ui.logTextEdit.appendPlainText(message)

    # --- running -----------------------------------------------------------------------

    def onApplyButton(self):
        if self._run is not None:
            self._run.cancel()
            self._log(_("Cancelling: the run stops after the current batch and the scene is left as it was."))
            self.updateGui()
            return
        from BrainMetSegLib.errors import BrainMetSegError

        entry = self._currentModel()
        if entry is None:
            return
        installing = bool(missingPythonPackages())
        if installing and not installPythonDependencies():
            self._log(_("Not run: the Python packages BrainMetSeg needs are not installed."))
            return
        if installing:
            self.updateDeviceInfo()
        try:
            inputs = self.logic.readInputs(self._parameterNode)
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("Cannot segment: {error}").format(error=error))
            return
        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        self.ui.resultWarningLabel.text = ""
        self._log(_("Segmenting '{case}' with model '{model}' ({device}).").format(
            case=inputs.case_id, model=entry.name, device=self.ui.deviceComboBox.currentText))
        self._runReference = self._parameterNode.bravo
        self._run = SegmentationRun(self.logic, inputs, entry.path, self._currentDevice())
        self._run.start()
        self._runTimer.start()
        self.updateGui()

    def onRunTimer(self):
        run = self._run
        if run is None:
            self._runTimer.stop()
            return
        time.sleep(WORKER_SLICE_S)  # let the worker thread run (see the module docstring)
        fraction, messages, done = run.poll()
        for message in messages:
            self._log(message)
        self.ui.progressBar.value = int(round(100 * fraction))
        if done:
            self._runTimer.stop()
            self._run = None
            self._finishRun(run)
            self.updateGui()

    def _finishRun(self, run):
        """Write a finished run's results to the scene (main thread), or say why there are none."""
        from BrainMetSegLib.errors import BrainMetSegError

        reference, self._runReference = self._runReference, None
        seconds = time.monotonic() - run.startTime
        if run.cancelRequested or run.cancelled:
            self._log(_("Cancelled after {seconds:.0f} s: the scene was not changed.").format(seconds=seconds))
            self.ui.progressBar.value = 0
            return
        if run.error is not None:
            self._log(run.errorDetails)
            if isinstance(run.error, BrainMetSegError):
                slicer.util.errorDisplay(_("Cannot segment: {error}").format(error=run.error))
            else:
                slicer.util.errorDisplay(_("Segmentation failed: {error}").format(error=run.error),
                                         detailedText=run.errorDetails)
            return
        if reference is None or not slicer.mrmlScene.IsNodePresent(reference):
            self._log(_("The BRAVO volume was removed during the run: nothing was added to the scene."))
            return
        try:
            # the module's parameter node, also when the panel is hidden (exit() lets go of it)
            outputs = self.logic.writeResults(self.logic.getParameterNode(), run.prediction, reference,
                                              run.operatingPoint)
        except Exception as error:
            self._log(traceback.format_exc())
            slicer.util.errorDisplay(_("Adding the results to the scene failed: {error}").format(error=error))
            return
        slicer.util.setSliceViewerLayers(background=reference)
        if outputs.probability is not None:
            from BrainMetSegLib.scene.volume_nodes import show_as_overlay

            show_as_overlay(outputs.probability, PROBABILITY_OPACITY)
        for warning in outputs.warnings:
            self._log(_("Warning: {warning}").format(warning=warning))
        self.ui.resultWarningLabel.text = "\n".join(outputs.warnings)
        self._log(_("{count} lesion(s) found in {seconds:.0f} s; {shown} shown at the model's operating point "
                    "(confidence ≥ {cutoff:.2f}).").format(count=len(outputs.lesions), seconds=seconds,
                                                          shown=outputs.shown, cutoff=outputs.cutoff))
        self.ui.progressBar.value = 100
        self.ui.resultsCollapsibleButton.collapsed = False

    # --- results -----------------------------------------------------------------------

    def onProbabilityMapToggled(self, checked):
        """Show or hide the last run's probability overlay; the setting also decides the next run's."""
        probability = self._parameterNode.probability if self._parameterNode else None
        if probability is None:
            return
        if checked:
            slicer.util.setSliceViewerLayers(foreground=probability, foregroundOpacity=PROBABILITY_OPACITY)
        else:
            slicer.util.setSliceViewerLayers(foreground=None)

    def onCutoffChanged(self, value):
        if self._parameterNode is None or self._parameterNode.segmentation is None:
            return
        self.logic.applyCutoff(self._parameterNode, value)

    def onLesionSelectionChanged(self):
        """Centre the slice views on the selected lesion, found by its id (the view may be sorted)."""
        from BrainMetSegLib.lesions import TABLE_COLUMNS

        view = self.ui.lesionTableView
        table = view.mrmlTableNode()
        indexes = view.selectionModel().selectedIndexes() if view.selectionModel() else []
        if table is None or not indexes:
            return
        text = view.model().data(indexes[0].sibling(indexes[0].row(), TABLE_COLUMNS.index("id")))
        try:
            lesionId = int(text)
        except (TypeError, ValueError):
            return  # not a lesion row (a header row)
        self.logic.centreOnLesion(table, lesionId)

    def onSaveTableButton(self):
        from BrainMetSegLib.errors import BrainMetSegError

        parameterNode = self._parameterNode
        if parameterNode is None or parameterNode.lesionTable is None:
            return
        settings = qt.QSettings()
        folder = settings.value(CSV_DIRECTORY_SETTING, os.path.expanduser("~"))
        suggested = os.path.join(folder, f"{parameterNode.lesionTable.GetName()}.csv")
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save the lesion table"), suggested,
                                              _("CSV files (*.csv)"))
        if not path:
            return
        # the dialog asked before replacing `path`; a name it did not see (suffix added) is not replaced
        confirmed = path.lower().endswith(".csv")
        if not confirmed:
            path += ".csv"
        try:
            saved, count = self.logic.saveTable(parameterNode, path, overwrite=confirmed)
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("The table was not saved: {error}").format(error=error))
            return
        settings.setValue(CSV_DIRECTORY_SETTING, os.path.dirname(str(saved)))
        self._log(_("Saved {count} lesion(s) (confidence ≥ {cutoff:.2f}) to {path}.").format(
            count=count, cutoff=parameterNode.cutoff, path=saved))


def modelsDirectory():
    """The models directory: the user's setting, else the command line's default."""
    from BrainMetSegLib.model_folder import models_directory

    value = qt.QSettings().value(MODELS_DIRECTORY_SETTING, "")
    return str(value) if value else str(models_directory())


# ------------------------------------------------------------------------------ run

class SegmentationRun:
    """One segmentation computed in a worker thread.

    The worker only records its progress and result here, under a lock, and never touches the
    scene or the GUI; the main thread polls `poll()` from a timer and alone writes the results.
    `cancel()` sets a flag the library checks between batches.
    """

    def __init__(self, logic, inputs, modelPath, device):
        self._logic = logic
        self._inputs = inputs
        self._modelPath = modelPath
        self._device = device
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._fraction = 0.0
        self._messages = []
        self._lastMessage = None
        self._done = False
        self.startTime = time.monotonic()
        self.prediction = None
        self.operatingPoint = None
        self.error = None
        self.errorDetails = ""
        self.cancelled = False
        self._thread = threading.Thread(target=self._work, name="BrainMetSeg segmentation", daemon=True)

    def start(self):
        self._thread.start()

    def cancel(self):
        self._cancel.set()

    @property
    def cancelRequested(self):
        return self._cancel.is_set()

    def poll(self):
        """(fraction done, messages since the last poll, finished)."""
        with self._lock:
            messages, self._messages = self._messages, []
            return self._fraction, messages, self._done

    def _progress(self, fraction, message):
        with self._lock:
            self._fraction = float(fraction)
            if message and message != self._lastMessage:
                elapsed = time.monotonic() - self.startTime
                self._messages.append(f"[{elapsed:5.1f} s] {message}")
                self._lastMessage = message

    def _work(self):
        from BrainMetSegLib.devices import device_description
        from BrainMetSegLib.predict import Cancelled
        from BrainMetSegLib.scene.logic import compute

        try:
            self._progress(0.0, f"loading model {os.path.basename(str(self._modelPath))}")
            predictor = self._logic.predictor(self._modelPath, self._device)
            self._progress(0.0, f"running on {device_description(predictor.device)}")
            prediction = compute(self._inputs, predictor, self._progress, self._cancel.is_set)
            with self._lock:
                self.prediction = prediction
                self.operatingPoint = predictor.config.operating_point
        except Cancelled:
            self.cancelled = True
        except Exception as error:
            self.error = error
            self.errorDetails = traceback.format_exc()
        finally:
            with self._lock:
                self._done = True


# ------------------------------------------------------------------------------ logic

class BrainMetSegLogic(ScriptedLoadableModuleLogic):
    """The panel's calls into the library (BrainMetSegLib.scene), which also runs without Slicer.

    Keeps the loaded model between runs: loading weights costs seconds, a second study should not.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._predictor = None
        self._predictorKey = None

    def getParameterNode(self):
        return BrainMetSegParameterNode(super().getParameterNode())

    # --- inputs

    @staticmethod
    def sceneInputs(parameterNode):
        from BrainMetSegLib.scene.inputs import SceneInputs

        return SceneInputs(t1_pre=parameterNode.t1_pre, t1_gd=parameterNode.t1_gd, bravo=parameterNode.bravo,
                           flair=parameterNode.flair)

    @staticmethod
    def missingInputs(parameterNode):
        """Titles of the sequences not selected yet, in channel order."""
        from BrainMetSegLib.scene.inputs import missing_inputs

        return missing_inputs(BrainMetSegLogic.sceneInputs(parameterNode))

    @staticmethod
    def inputProblems(parameterNode):
        """Why Apply cannot run with these inputs yet (empty: it can)."""
        from BrainMetSegLib.errors import BrainMetSegError
        from BrainMetSegLib.scene.inputs import check_inputs

        missing = BrainMetSegLogic.missingInputs(parameterNode)
        if missing:
            return [_("select {inputs}").format(inputs=", ".join(missing))]
        try:
            check_inputs(BrainMetSegLogic.sceneInputs(parameterNode))
        except BrainMetSegError as error:
            return [str(error)]
        return []

    @staticmethod
    def autoFill(parameterNode):
        """Fill the empty roles from the scene's volume names (a volume already chosen for another
        role is not reused). Returns (role title, why it stays empty) for the roles still empty."""
        from BrainMetSegLib.roles import ROLE_TITLES, ROLES
        from BrainMetSegLib.scene.inputs import auto_assign

        guessed, assignment = auto_assign(slicer.mrmlScene)
        used = {node.GetID() for node in BrainMetSegLogic.sceneInputs(parameterNode).nodes().values() if node}
        for role in ROLES:
            node = getattr(guessed, role)
            if getattr(parameterNode, role) is None and node is not None and node.GetID() not in used:
                setattr(parameterNode, role, node)
                used.add(node.GetID())
        return [(ROLE_TITLES[role], assignment.notes[role]) for role in ROLES
                if getattr(parameterNode, role) is None and role in assignment.notes]

    @staticmethod
    def clearInputs(parameterNode):
        from BrainMetSegLib.roles import ROLES

        for role in ROLES:
            setattr(parameterNode, role, None)

    @staticmethod
    def readInputs(parameterNode):
        """Check the inputs and copy their voxels (main thread), for a run in another thread."""
        from BrainMetSegLib.scene.inputs import read_inputs

        return read_inputs(BrainMetSegLogic.sceneInputs(parameterNode))

    # --- model

    @staticmethod
    def deviceDescription(device):
        """The device `device` resolves to, named for the user, or why it cannot be used."""
        from BrainMetSegLib.errors import BrainMetSegError

        try:
            from BrainMetSegLib.devices import device_description, resolve_device

            return device_description(resolve_device(device))
        except BrainMetSegError as error:
            return str(error)
        except Exception as error:  # a broken torch installation: say so, do not break the panel
            return _("PyTorch cannot be loaded: {error}").format(error=error)

    def predictor(self, modelPath, device):
        """The model at `modelPath` loaded on `device`, reused while neither changed."""
        from BrainMetSegLib.scene.logic import load_predictor

        folder = str(modelPath)
        stamps = tuple(os.path.getmtime(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
                       if name.startswith("model."))
        key = (folder, device, stamps)
        if self._predictorKey != key:
            self._predictor, self._predictorKey = None, None
            self._predictor = load_predictor(folder, device)
            self._predictorKey = key
        return self._predictor

    # --- running

    def run(self, parameterNode, modelPath, device="auto", progress=None, cancel=None):
        """Segment the selected study in this thread and add the results (scripts, self-test)."""
        from BrainMetSegLib.scene.logic import compute

        inputs = self.readInputs(parameterNode)
        predictor = self.predictor(modelPath, device)
        prediction = compute(inputs, predictor, progress, cancel)
        return self.writeResults(parameterNode, prediction, parameterNode.bravo, predictor.config.operating_point)

    @staticmethod
    def writeResults(parameterNode, prediction, referenceNode, cutoff):
        """Add a run's segmentation, table and (if asked) probability map; the panel follows them."""
        from BrainMetSegLib.scene.logic import write_to_scene

        outputs = write_to_scene(prediction, referenceNode, probability_map=parameterNode.probabilityMap,
                                 cutoff=cutoff)
        with slicer.util.NodeModify(parameterNode):
            parameterNode.segmentation = outputs.segmentation
            parameterNode.lesionTable = outputs.table
            parameterNode.probability = outputs.probability
            parameterNode.cutoff = outputs.cutoff
        return outputs

    # --- results

    @staticmethod
    def applyCutoff(parameterNode, cutoff):
        """Show the lesions whose confidence is at least `cutoff`; returns how many are shown."""
        from BrainMetSegLib.scene.segmentation import apply_confidence_cutoff

        shown = apply_confidence_cutoff(parameterNode.segmentation, cutoff)
        parameterNode.cutoff = float(cutoff)
        return shown

    @staticmethod
    def shownLesions(table, cutoff):
        """(lesions of `table` at or above `cutoff`, all lesions of `table`)."""
        from BrainMetSegLib.scene.table import lesions_from_table

        lesions = lesions_from_table(table)
        shown = sum(1 for lesion in lesions if lesion.confidence is not None and lesion.confidence >= cutoff)
        return shown, len(lesions)

    @staticmethod
    def centreOnLesion(table, lesionId):
        """Centre the slice views on the centroid of the lesion numbered `lesionId`; False if there is none."""
        from BrainMetSegLib.scene.table import centre_slice_views, lesions_from_table

        lesion = next((lesion for lesion in lesions_from_table(table) if lesion.index == lesionId), None)
        if lesion is None:
            return False
        centre_slice_views(lesion.centroid_ras)
        return True

    @staticmethod
    def saveTable(parameterNode, path, overwrite=False):
        """Write the lesions shown at the current cut-off as CSV; returns (path, lesions written)."""
        from BrainMetSegLib.scene.table import save_lesion_table_csv

        table, cutoff = parameterNode.lesionTable, parameterNode.cutoff
        saved = save_lesion_table_csv(table, path, overwrite=overwrite, cutoff=cutoff)
        return saved, BrainMetSegLogic.shownLesions(table, cutoff)[0]


# ------------------------------------------------------------------------------ self-test

class BrainMetSegTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest through slicer_add_python_unittest).

    The model is made by the library's own training code: a few steps on a tiny synthetic
    cohort, CPU, in a temporary folder (about a minute). Its answers are not meaningful, so the
    checks are about the flow: what the scene holds after a run, a cancel, and the cut-off.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        import tempfile

        self.assertTrue(installPythonDependencies(), "the library's Python packages are needed")
        with tempfile.TemporaryDirectory(prefix="BrainMetSegTest-") as folder:
            self.workFolder = folder
            self.setUp()
            self.test_missing_inputs()
            self.setUp()
            self.test_selectors_fill_from_series_names()
            self.setUp()
            self.test_logic_segments_a_synthetic_study()
            self.setUp()
            self.test_cancelled_run_leaves_the_scene_unchanged()
            self.setUp()
            self.test_panel_runs_in_the_background()

    # --- helpers

    def _tinyModel(self):
        """A model folder trained for a few steps on three tiny synthetic cases (made once)."""
        model = getattr(self, "_model", None)
        if model is not None:
            return model
        from pathlib import Path

        from BrainMetSegLib.synth import write_cohort
        from BrainMetSegLib.train import train
        from BrainMetSegLib.train_options import TrainOptions

        root = Path(self.workFolder)
        self.delayDisplay("Training a tiny model on a tiny synthetic cohort (about a minute)")
        write_cohort(root / "cohort", 3, seed=0, preset_name="small")
        options = TrainOptions(dataset=root / "cohort", out=root / "models" / "selftest", max_steps=3, epochs=1,
                               batch_size=2, backbone="mobilenet_v3_large", in_plane_size=48, pixel_spacing=4.0,
                               slice_spacing=4.0, device="cpu", workers=1, model_name="selftest")
        train(options)
        # the run folder holds its model folder; the models directory lists model folders
        self._model = Path(options.out) / "model"
        return self._model

    def _study(self, names=None):
        """A small synthetic study as four volume nodes named like DICOM series; returns the parameter node."""
        from BrainMetSegLib.roles import ROLES
        from BrainMetSegLib.scene.volume_nodes import add_volume_node
        from BrainMetSegLib.synth import make_case
        from BrainMetSegLib.volumes import Volume

        names = names or {"t1_pre": "3: AX T1 SE pre", "t1_gd": "4: AX T1 SE +C", "bravo": "5: AX BRAVO +C",
                          "flair": "2: AX T2 FLAIR"}
        case = make_case(seed=7, small=True)
        parameterNode = BrainMetSegLogic().getParameterNode()
        for channel, role in enumerate(ROLES):
            setattr(parameterNode, role, add_volume_node(Volume(case.images[channel], case.affine), names[role]))
        return parameterNode

    @staticmethod
    def _nodeIds():
        scene = slicer.mrmlScene
        return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}

    # --- tests

    def test_missing_inputs(self):
        """The parameter node holds the four roles and reports the unselected ones in channel order."""
        from BrainMetSegLib.roles import ROLE_TITLES

        parameterNode = BrainMetSegLogic().getParameterNode()
        self.assertEqual(len(BrainMetSegLogic.missingInputs(parameterNode)), 4)
        parameterNode.bravo = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "bravo")
        parameterNode.t1_pre = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "t1_pre")
        self.assertEqual(BrainMetSegLogic.missingInputs(parameterNode), [ROLE_TITLES["t1_gd"], ROLE_TITLES["flair"]])
        # one volume for two roles is refused before any work
        parameterNode.t1_gd = parameterNode.bravo
        parameterNode.flair = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "flair")
        (problem,) = BrainMetSegLogic.inputProblems(parameterNode)
        self.assertIn("'bravo'", problem)

    def test_selectors_fill_from_series_names(self):
        """Volumes added to the scene fill the panel's empty selectors by name; a user's choice stays."""
        slicer.util.selectModule("BrainMetSeg")
        widget = slicer.modules.brainmetseg.widgetRepresentation().self()
        parameterNode = widget.logic.getParameterNode()
        chosen = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my choice")
        parameterNode.flair = chosen
        nodes = {name: slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
                 for name in ("3: AX T1 SE pre", "4: AX T1 SE +C", "5: AX BRAVO +C", "2: AX T2 FLAIR", "6: DWI")}
        deadline = time.monotonic() + 5
        while parameterNode.bravo is None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.02)
        self.assertIs(parameterNode.t1_pre, nodes["3: AX T1 SE pre"])
        self.assertIs(parameterNode.t1_gd, nodes["4: AX T1 SE +C"])
        self.assertIs(parameterNode.bravo, nodes["5: AX BRAVO +C"])
        self.assertIs(parameterNode.flair, chosen)
        self.assertIs(widget.ui.bravoSelector.currentNode(), nodes["5: AX BRAVO +C"])

    def test_logic_segments_a_synthetic_study(self):
        """A run adds one segment per lesion, a table with one row per lesion, and the probability
        map; the cut-off shows exactly the lesions at or above it."""
        from BrainMetSegLib.scene.segmentation import apply_confidence_cutoff, segment_confidence

        model = self._tinyModel()
        parameterNode = self._study()
        outputs = BrainMetSegLogic().run(parameterNode, model, device="cpu")
        segmentation = outputs.segmentation.GetSegmentation()
        count = len(outputs.lesions)
        self.assertGreater(count, 0, "the tiny model found no lesion; the checks below need one")
        self.assertEqual(segmentation.GetNumberOfSegments(), count)
        self.assertEqual(outputs.table.GetNumberOfRows(), count)
        self.assertEqual([segmentation.GetNthSegment(i).GetName() for i in range(count)],
                         [f"Lesion {lesion.index}" for lesion in outputs.lesions])
        self.assertIsNotNone(outputs.probability)
        self.assertIs(parameterNode.segmentation, outputs.segmentation)
        self.assertIs(parameterNode.lesionTable, outputs.table)
        # the cut-off: the median confidence shows the lesions at or above it and hides the others
        confidences = sorted(lesion.confidence for lesion in outputs.lesions)
        cutoff = confidences[len(confidences) // 2]
        shown = BrainMetSegLogic.applyCutoff(parameterNode, cutoff)
        display = outputs.segmentation.GetDisplayNode()
        visible = {segmentation.GetNthSegmentID(i): bool(display.GetSegmentVisibility(segmentation.GetNthSegmentID(i)))
                   for i in range(count)}
        expected = {segment_id: segment_confidence(segmentation.GetSegment(segment_id)) >= cutoff
                    for segment_id in visible}
        self.assertEqual(visible, expected)
        self.assertEqual(shown, sum(expected.values()))
        self.assertEqual(BrainMetSegLogic.shownLesions(outputs.table, cutoff), (shown, count))
        self.assertEqual(apply_confidence_cutoff(outputs.segmentation, 0.0), count)
        # the table centres the views on a lesion, and saves as CSV
        first = outputs.lesions[0]
        self.assertTrue(BrainMetSegLogic.centreOnLesion(outputs.table, first.index))
        sliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        centre = [sliceNode.GetSliceToRAS().GetElement(axis, 3) for axis in range(3)]
        for got, expected in zip(centre, first.centroid_ras):
            self.assertAlmostEqual(got, expected, delta=2.5)
        path, written = BrainMetSegLogic.saveTable(parameterNode, os.path.join(self.workFolder, "lesions.csv"))
        with open(path, encoding="utf-8") as file:
            self.assertEqual(len(file.read().strip().splitlines()), 1 + written)

    def test_cancelled_run_leaves_the_scene_unchanged(self):
        """Cancelling stops the run with predict.Cancelled and adds nothing to the scene."""
        from BrainMetSegLib.predict import Cancelled

        model = self._tinyModel()
        parameterNode = self._study()
        before = self._nodeIds()
        with self.assertRaises(Cancelled):
            BrainMetSegLogic().run(parameterNode, model, device="cpu", cancel=lambda: True)
        self.assertEqual(self._nodeIds(), before)
        self.assertIsNone(parameterNode.segmentation)

    def test_panel_runs_in_the_background(self):
        """Apply returns at once (the network runs in a thread), turns into Cancel, and the results
        reach the panel; Cancel pressed during a run leaves the scene as it was."""
        model = self._tinyModel()
        settings = qt.QSettings()
        previous = {key: settings.value(key) for key in (MODELS_DIRECTORY_SETTING, MODEL_SETTING, DEVICE_SETTING)}
        slicer.util.selectModule("BrainMetSeg")
        widget = slicer.modules.brainmetseg.widgetRepresentation().self()
        try:
            widget.ui.modelsDirectoryPathLineEdit.currentPath = str(model.parent.parent)
            widget.refreshModels()
            self.assertEqual([entry.path for entry in widget._models], [])  # run folders are not model folders
            widget.ui.modelsDirectoryPathLineEdit.currentPath = str(model.parent)
            names = [entry.name for entry in widget._models]
            self.assertEqual(names, ["selftest"])
            widget.ui.deviceComboBox.currentIndex = DEVICES.index("cpu")
            self._study()
            deadline = time.monotonic() + 5
            while widget.logic.missingInputs(widget._parameterNode) and time.monotonic() < deadline:
                slicer.app.processEvents()
            self.assertTrue(widget.ui.applyButton.enabled, widget.ui.statusLabel.text)

            # a cancelled run
            before = self._nodeIds()
            widget.ui.applyButton.click()
            self.assertEqual(widget.ui.applyButton.text, "Cancel")
            widget.ui.applyButton.click()
            self._waitForRun(widget)
            self.assertEqual(self._nodeIds(), before)
            self.assertIn("Cancelled", widget.ui.logTextEdit.toPlainText())

            # a finished run
            started = time.monotonic()
            widget.ui.applyButton.click()
            self.assertLess(time.monotonic() - started, 5.0, "Apply blocked the GUI")
            self.assertIsNotNone(widget._run)
            self._waitForRun(widget)
            self.assertEqual(widget.ui.applyButton.text, "Apply")
            self.assertIsNotNone(widget._parameterNode.segmentation)
            self.assertEqual(widget.ui.progressBar.value, 100)
            self.assertEqual(widget.ui.lesionTableView.mrmlTableNode().GetID(),
                             widget._parameterNode.lesionTable.GetID())
            widget.ui.cutoffSliderWidget.value = 1.0
            self.assertAlmostEqual(widget._parameterNode.cutoff, 1.0)
        finally:
            # the user's settings as they were (an unset models folder stays unset: it follows the default)
            for key, value in previous.items():
                if value is None:
                    settings.remove(key)
                else:
                    settings.setValue(key, value)
            wasBlocked = widget.ui.modelsDirectoryPathLineEdit.blockSignals(True)
            widget.ui.modelsDirectoryPathLineEdit.currentPath = modelsDirectory()
            widget.ui.modelsDirectoryPathLineEdit.blockSignals(wasBlocked)
            widget.refreshModels()

    def _waitForRun(self, widget, timeout=300):
        deadline = time.monotonic() + timeout
        while widget._run is not None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.02)
        self.assertIsNone(widget._run, "the run did not finish in time")
