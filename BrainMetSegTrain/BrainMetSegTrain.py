"""BrainMetSegTrain: turn (possibly incomplete) annotations into datasets and models (research use only).

GUI wiring only. The library it drives, BrainMetSegLib, is installed with the BrainMetSeg module
(hence the dependency below) and is imported inside methods, so that this module loads at
Slicer start-up even before torch and the library's other dependencies are installed. What the
two panels have in common comes from the BrainMetSeg module file itself, imported inside
methods too: the dependency installer, the models folder setting, the automatic choice of the
four sequences, and the segmentation run in a worker thread (see its docstring for why a thread
and why the timer sleeps on every tick).

Training jobs are separate processes (BrainMetSegLib.jobs): the panel only starts them and
reads their run folders, on a timer, reading only the events added since the last tick. So a
job outlives the panel and Slicer, and the list is rebuilt from the runs folder at start-up.
Stopping a job waits for its checkpoint, so it runs in a worker thread as well.
"""
import html
import logging
import os
import threading
import time
import traceback
from pathlib import Path

import qt
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

DATASET_SETTING = "BrainMetSegTrain/Dataset"
RUNS_DIRECTORY_SETTING = "BrainMetSegTrain/RunsDirectory"
REVIEW_MODEL_SETTING = "BrainMetSegTrain/ReviewModel"

LOSSES = ("lopsided", "bootstrap", "ce")
BACKBONES = (None, "resnet50", "resnet101", "mobilenet_v3_large")
CENSOR_MODES = ("none", "stochastic", "size")
GPU_CHOICES = (None, 0, 1, 2, 4, 8)
"""The values of the training form's menus, in the .ui's order (None: the trainer chooses)."""

JOB_POLL_INTERVAL_MS = 2000
JOB_RESCAN_TICKS = 5
"""Every this many polls the runs folder is listed again, for runs started from the command line."""
LOG_TAIL_LINES = 40
STATE_COLOURS = {"running": "#1f5fbf", "finished": "#1e7b34", "failed": "#b00020", "stopped": "#a05a00",
                 "killed": "#b00020", "unknown": "#6b6b6b"}
RESUMABLE_STATES = ("stopped", "killed", "failed")


def inferenceModule():
    """The BrainMetSeg module file, whose installer, models folder and segmentation run this panel shares."""
    import BrainMetSeg

    return BrainMetSeg


def defaultRunsDirectory():
    return os.path.join(os.path.expanduser("~"), ".brainmetseg", "runs")


def runKey(run):
    """One key per run folder, however its path was spelt (the runs folder field, a launch, a link)."""
    return os.path.realpath(str(run))


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
    """One case to export or review: the four sequences (named as BrainMetSegLib.roles.ROLES, so
    the inference module's input helpers accept this node too) and the annotator's segmentation."""

    t1_pre: vtkMRMLScalarVolumeNode
    t1_gd: vtkMRMLScalarVolumeNode
    bravo: vtkMRMLScalarVolumeNode
    flair: vtkMRMLScalarVolumeNode
    annotation: vtkMRMLSegmentationNode


class BackgroundCall:
    """One library call in a worker thread (a dataset summary, a job stop); the main thread polls `done`."""

    def __init__(self, function, *args, **kwargs):
        self.result = None
        self.error = None
        self.errorDetails = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(function, args, kwargs), daemon=True,
                                        name=f"BrainMetSegTrain {getattr(function, '__name__', 'call')}")
        self._thread.start()

    @property
    def done(self):
        return self._done.is_set()

    def _work(self, function, args, kwargs):
        try:
            self.result = function(*args, **kwargs)
        except Exception as error:
            self.error = error
            self.errorDetails = traceback.format_exc()
        finally:
            self._done.set()


# ------------------------------------------------------------------------------ widget

class BrainMetSegTrainWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._models = []
        self._reviewRun = None
        self._reviewRequest = None
        self._review = None
        self._summaryCall = None
        self._summaryAgain = False
        self._appliedLossDefault = None
        self._caseIds = {}
        self._lastReference = None
        self._jobs = []
        self._jobByRun = {}
        self._statuses = {}
        self._stopCalls = {}
        self._shownHistory = None
        self._chart = None
        self._plotView = None
        self._jobTicks = 0
        self._libraryReady = False
        self._workTimer = None
        self._jobsTimer = None
        self._autoFillTimer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BrainMetSegTrain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects its mrmlSceneChanged signal to every node selector's and the plot's setMRMLScene.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = BrainMetSegTrainLogic()
        inference = inferenceModule()

        self._workTimer = qt.QTimer()
        self._workTimer.setInterval(inference.POLL_INTERVAL_MS)
        self._workTimer.connect("timeout()", self.onWorkTimer)
        self._jobsTimer = qt.QTimer()
        self._jobsTimer.setInterval(JOB_POLL_INTERVAL_MS)
        self._jobsTimer.connect("timeout()", self.pollJobs)
        self._autoFillTimer = qt.QTimer()
        self._autoFillTimer.setSingleShot(True)
        self._autoFillTimer.setInterval(inference.AUTO_FILL_DELAY_MS)
        self._autoFillTimer.connect("timeout()", self.autoFillInputs)

        self.ui.autoFillButton.connect("clicked(bool)", self.onAutoFillButton)
        self.ui.datasetPathLineEdit.connect("currentPathChanged(QString)", self.onDatasetChanged)
        self.ui.addCaseButton.connect("clicked(bool)", self.onAddCaseButton)
        self.ui.caseIdLineEdit.connect("textChanged(QString)", self.updateGui)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshModels)
        self.ui.reviewModelComboBox.connect("currentIndexChanged(int)", self.onReviewModelChanged)
        self.ui.findMissedButton.connect("clicked(bool)", self.onFindMissedButton)
        self.ui.missedLesionsListWidget.connect("currentRowChanged(int)", self.onCandidateSelected)
        self.ui.acceptButton.connect("clicked(bool)", self.onAcceptButton)
        self.ui.rejectButton.connect("clicked(bool)", self.onRejectButton)
        self.ui.censorModeComboBox.connect("currentIndexChanged(int)", self.onCensorModeChanged)
        self.ui.initModelComboBox.connect("currentIndexChanged(int)", self.onInitModelChanged)
        self.ui.assignValidationButton.connect("clicked(bool)", self.onAssignValidationButton)
        self.ui.runsFolderPathLineEdit.connect("currentPathChanged(QString)", self.onRunsFolderChanged)
        self.ui.launchButton.connect("clicked(bool)", self.onLaunchButton)
        self.ui.jobsListWidget.connect("currentRowChanged(int)", self.onJobSelected)
        self.ui.stopButton.connect("clicked(bool)", self.onStopButton)
        self.ui.resumeButton.connect("clicked(bool)", self.onResumeButton)
        self.ui.copyCommandButton.connect("clicked(bool)", self.onCopyCommandButton)
        self.ui.useModelButton.connect("clicked(bool)", self.onUseModelButton)

        settings = qt.QSettings()
        for pathEdit, key, default in ((self.ui.datasetPathLineEdit, DATASET_SETTING, ""),
                                       (self.ui.runsFolderPathLineEdit, RUNS_DIRECTORY_SETTING,
                                        defaultRunsDirectory())):
            wasBlocked = pathEdit.blockSignals(True)
            pathEdit.currentPath = str(settings.value(key, default) or default)
            pathEdit.blockSignals(wasBlocked)
        self.ui.runNameLineEdit.text = self._defaultRunName()
        self.ui.caseIdLineEdit.text = self._nextCaseId()
        self.refreshModels()
        self._updateCensorRate()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onNodeAdded)

        self.initializeParameterNode()
        # after the panel is shown: the summary reads every label file once, the jobs list every run folder
        qt.QTimer.singleShot(0, self.refreshLibraryViews)

    def cleanup(self):
        """Jobs are separate processes and keep running; only this panel's timers and threads stop."""
        self.removeObservers()
        if self._reviewRun is not None:
            self._reviewRun.cancel()
        for timer in (self._workTimer, self._jobsTimer, self._autoFillTimer):
            if timer is not None:
                timer.stop()

    def enter(self):
        self.initializeParameterNode()
        self.refreshModels()
        self.pollJobs()
        self._jobsTimer.start()

    def exit(self):
        # Stop following the parameter node and the jobs while hidden; enter() picks them up again.
        self.setParameterNode(None)
        self._jobsTimer.stop()

    def onSceneStartClose(self, caller, event):
        if self._reviewRun is not None:
            self._reviewRun.cancel()
        self._clearReview()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        self._chart, self._plotView, self._shownHistory = None, None, None
        if self.parent.isEntered:
            self.initializeParameterNode()
        self._showSelectedJob()

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

    def libraryReady(self):
        """Whether the library's Python packages are installed (looked up without importing them, until
        they are all there)."""
        self._libraryReady = self._libraryReady or not inferenceModule().missingPythonPackages()
        return self._libraryReady

    def ensureLibrary(self):
        """Offer to install the missing packages (once for both modules); True when everything is there."""
        if self.libraryReady():
            return True
        if not inferenceModule().installPythonDependencies():
            return False
        self.refreshLibraryViews()
        return True

    def refreshLibraryViews(self):
        """The parts of the panel that read datasets and run folders, once the library can run."""
        if not self.libraryReady():
            message = _("The Python packages BrainMetSeg needs are not installed yet; they are offered when you "
                        "first press Add case, Find missed lesions or Launch training.")
            self.ui.datasetSummaryTextEdit.setPlainText(message)
            self.ui.jobStatusLabel.text = message
            return
        self.refreshSummary()
        self.refreshJobs()

    # --- inputs --------------------------------------------------------------------------

    def onNodeAdded(self, caller=None, event=None):
        if self._parameterNode is not None:
            self._autoFillTimer.start()

    def autoFillInputs(self):
        """Fill the empty sequence selectors from the volumes' names, as the BrainMetSeg panel does."""
        if self._parameterNode is None or self._reviewRun is not None:
            return
        notes = inferenceModule().BrainMetSegLogic.autoFill(self._parameterNode)
        self.ui.inputNotesLabel.text = "\n".join(f"{title}: {note}" for title, note in notes)
        self.ui.inputNotesLabel.visible = bool(notes)

    def onAutoFillButton(self):
        inferenceModule().BrainMetSegLogic.clearInputs(self._parameterNode)
        self.autoFillInputs()

    def updateGui(self, caller=None, event=None):
        """Buttons' states and the status line: what is missing for export, review and training."""
        parameterNode = self._parameterNode
        if parameterNode is None:
            return
        self._followReference(parameterNode.bravo)
        problems = self.logic.inputProblems(parameterNode)
        reviewing = self._reviewRun is not None
        if reviewing:
            self.ui.statusLabel.text = _("Looking for missed lesions… press Cancel to stop.")
        elif problems:
            self.ui.statusLabel.text = _("To export or review: {problems}.").format(problems="; ".join(problems))
        else:
            self.ui.statusLabel.text = _("The four sequences and the annotation are selected.")
        hasDataset = bool(self.ui.datasetPathLineEdit.currentPath)
        self.ui.addCaseButton.enabled = not problems and not reviewing and hasDataset \
            and bool(self.ui.caseIdLineEdit.text.strip())
        self.ui.inputsCollapsibleButton.enabled = not reviewing
        self.ui.findMissedButton.text = _("Cancel") if reviewing else _("Find missed lesions")
        self.ui.findMissedButton.enabled = (reviewing and not self._reviewRun.cancelRequested) or \
            (not reviewing and not problems and self._currentModel() is not None)
        self._updateReviewButtons()

    def _followReference(self, reference):
        """A new study gets the next free case id; a study exported earlier gets its own id back."""
        referenceId = reference.GetID() if reference is not None else None
        if referenceId == self._lastReference:
            return
        self._lastReference = referenceId
        caseId = self._caseIds.get(referenceId) or self._nextCaseId()
        if caseId:
            self.ui.caseIdLineEdit.text = caseId

    # --- export --------------------------------------------------------------------------

    def _datasetRoot(self):
        return self.ui.datasetPathLineEdit.currentPath.strip()

    def _nextCaseId(self):
        if not self._datasetRoot() or not self.libraryReady():
            return "Mets_001"
        from BrainMetSegLib.scene.export import next_case_id

        return next_case_id(self._datasetRoot())

    def onDatasetChanged(self, path):
        qt.QSettings().setValue(DATASET_SETTING, path)
        self._caseIds.clear()
        self.ui.caseIdLineEdit.text = self._nextCaseId()
        self._appliedLossDefault = None
        self.ui.lossNoteLabel.text = ""
        self.ui.runNameLineEdit.text = self._defaultRunName()
        if self.libraryReady():
            self.refreshSummary()
        self.updateGui()

    def onAddCaseButton(self):
        from BrainMetSegLib.errors import BrainMetSegError

        if not self.ensureLibrary():
            return
        root, caseId = self._datasetRoot(), self.ui.caseIdLineEdit.text.strip()
        overwrite = False
        if self.logic.caseExists(root, caseId):
            question = _("Case {case} already exists in {root}.\n\nReplace its images and label with the ones "
                         "selected now? Candidates rejected in review for this case are kept.").format(
                case=caseId, root=root)
            if not slicer.util.confirmYesNoDisplay(question, windowTitle=_("Replace case")):
                return
            overwrite = True
        labelStatus = "complete" if self.ui.completeRadioButton.checked else "partial"
        try:
            with slicer.util.WaitCursor():
                exported = self.logic.exportCase(self._parameterNode, root, caseId, labelStatus,
                                                 self.ui.splitComboBox.currentText, overwrite=overwrite)
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("The case was not added: {error}").format(error=error))
            return
        except Exception as error:
            logging.error(traceback.format_exc())
            slicer.util.errorDisplay(_("Adding the case failed: {error}").format(error=error),
                                     detailedText=traceback.format_exc())
            return
        if self._parameterNode.bravo is not None:
            self._caseIds[self._parameterNode.bravo.GetID()] = caseId
        lines = [_("{case}: written to {folder} ({lesions} lesion(s), label {status}, split {split}).").format(
            case=caseId, folder=exported.entry.folder, lesions=exported.lesions, status=exported.entry.label_status,
            split=exported.entry.split)]
        lines += [_("Warning: {warning}").format(warning=warning) for warning in exported.warnings]
        self.ui.exportStatusLabel.text = "\n".join(lines)
        self.refreshSummary()
        self.updateGui()

    def refreshSummary(self):
        """Count the dataset's cases and lesions in a worker thread (a new dataset reads every label)."""
        root = self._datasetRoot()
        if not root or not os.path.isdir(root) or not os.listdir(root):
            self.ui.datasetSummaryTextEdit.setPlainText(
                _("No case yet: choose a folder (new or existing); Add case writes the first case there."))
            self.ui.validationCasesLabel.text = ""
            return
        if self._summaryCall is not None:
            self._summaryAgain = True
            return
        from BrainMetSegLib.dataset_summary import summarize_dataset

        self.ui.datasetSummaryTextEdit.setPlainText(_("Counting cases and lesions in {root}…").format(root=root))
        self._summaryCall = BackgroundCall(summarize_dataset, root)
        self._summaryCall.root = root
        self._workTimer.start()

    def _finishSummary(self, call):
        from BrainMetSegLib.dataset_summary import format_summary
        from BrainMetSegLib.jobs import default_loss_for

        if call.root != self._datasetRoot():
            return
        if call.error is not None:
            self.ui.datasetSummaryTextEdit.setPlainText(str(call.error))
            self.ui.validationCasesLabel.text = ""
            return
        summary = call.result
        self.ui.datasetSummaryTextEdit.setPlainText(format_summary(summary))
        self.ui.validationCasesLabel.text = _("{val} of {total} case(s) in val").format(
            val=summary.splits["val"].cases, total=summary.total.cases)
        try:
            choice = default_loss_for(call.root, CENSOR_MODES[self.ui.censorModeComboBox.currentIndex])
        except Exception as error:  # an unreadable dataset.json: the summary above says why
            logging.warning("BrainMetSegTrain: no default loss for %s: %s", call.root, error)
            return
        self._applyLossDefault(choice, summary.has_partial)

    def _applyLossDefault(self, choice, hasPartial):
        """Preselect the library's default loss, once per change of that default: a loss the user
        picked by hand stays until the dataset (or the censoring) calls for another one."""
        key = (choice.loss, choice.alpha, choice.beta)
        if key == self._appliedLossDefault:
            return
        self._appliedLossDefault = key
        self.ui.lossComboBox.currentIndex = LOSSES.index(choice.loss)
        self.ui.alphaSpinBox.value = choice.alpha
        self.ui.betaSpinBox.value = choice.beta
        if choice.loss == "lopsided":
            why = _("the dataset has partial labels") if hasPartial else _("censoring simulates missed lesions")
            self.ui.lossNoteLabel.text = _("Lopsided bootstrap (α {alpha:g}, β {beta:g}) preselected: {why}.").format(
                alpha=choice.alpha, beta=choice.beta, why=why)
        else:
            self.ui.lossNoteLabel.text = _("Weighted cross-entropy (α {alpha:g}) preselected: every training and "
                                           "validation label is complete.").format(alpha=choice.alpha)

    # --- models --------------------------------------------------------------------------

    def refreshModels(self):
        """Fill the review's model menu and the fine-tuning menu from the BrainMetSeg models folder."""
        from BrainMetSegLib.scene.models import model_entries

        previous = self._currentModel()
        wanted = previous.name if previous is not None else qt.QSettings().value(REVIEW_MODEL_SETTING, "")
        previousInit = self._initModel()
        self._models = model_entries(inferenceModule().modelsDirectory())
        names = [entry.name for entry in self._models]
        combo = self.ui.reviewModelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for index, entry in enumerate(self._models):
            combo.addItem(entry.label)
            combo.setItemData(index, entry.card, qt.Qt.ToolTipRole)
            if entry.synthetic:
                combo.setItemData(index, qt.QBrush(qt.QColor("#c00000")), qt.Qt.ForegroundRole)
        combo.currentIndex = names.index(wanted) if wanted in names else (0 if names else -1)
        combo.blockSignals(wasBlocked)
        init = self.ui.initModelComboBox
        wasBlocked = init.blockSignals(True)
        while init.count > 1:
            init.removeItem(init.count - 1)
        for entry in self._models:
            init.addItem(entry.label)
        keep = previousInit.name if previousInit is not None else None
        init.currentIndex = names.index(keep) + 1 if keep in names else 0
        init.blockSignals(wasBlocked)
        self.onReviewModelChanged()
        self.onInitModelChanged()

    def _currentModel(self):
        index = self.ui.reviewModelComboBox.currentIndex
        return self._models[index] if 0 <= index < len(self._models) else None

    def _initModel(self):
        index = self.ui.initModelComboBox.currentIndex - 1
        return self._models[index] if 0 <= index < len(self._models) else None

    def onReviewModelChanged(self, index=None):
        entry = self._currentModel()
        synthetic = entry is not None and entry.synthetic
        self.ui.reviewModelComboBox.setStyleSheet("QComboBox { color: #c00000; }" if synthetic else "")
        if entry is not None:
            qt.QSettings().setValue(REVIEW_MODEL_SETTING, entry.name)
        self.updateGui()

    def onInitModelChanged(self, index=None):
        """Fine-tuning keeps the backbone of the model it starts from, so the backbone menu waits."""
        fineTuning = self._initModel() is not None
        if fineTuning:
            self.ui.backboneComboBox.currentIndex = 0
        self.ui.backboneComboBox.enabled = not fineTuning

    # --- review --------------------------------------------------------------------------

    def onFindMissedButton(self):
        from BrainMetSegLib.errors import BrainMetSegError

        if self._reviewRun is not None:
            self._reviewRun.cancel()
            self.ui.reviewStatusLabel.text = _("Cancelling…")
            self.updateGui()
            return
        entry = self._currentModel()
        if entry is None or not self.ensureLibrary():
            return
        try:
            request = self.logic.reviewRequest(self._parameterNode, self._datasetRoot(),
                                               self.ui.caseIdLineEdit.text.strip())
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("Cannot review: {error}").format(error=error))
            return
        inference = inferenceModule()
        self._clearReview()
        self.ui.reviewProgressBar.value = 0
        self.ui.reviewStatusLabel.text = _("Running model '{model}' on the case…").format(model=entry.name)
        self._reviewRequest = request
        self._reviewRun = inference.SegmentationRun(self.logic.inference, request.inputs, entry.path,
                                                    self.logic.reviewDevice())
        self._reviewRun.start()
        self._workTimer.start()
        self.updateGui()

    def onWorkTimer(self):
        """Poll the worker threads: the review's network run, the dataset summary, job stops."""
        time.sleep(inferenceModule().WORKER_SLICE_S)  # let the worker threads run (see the module docstring)
        run = self._reviewRun
        if run is not None:
            fraction, messages, done = run.poll()
            self.ui.reviewProgressBar.value = int(round(100 * fraction))
            if messages:
                self.ui.reviewStatusLabel.text = messages[-1]
            if done:
                self._reviewRun = None
                self._finishReview(run)
                self.updateGui()
        call = self._summaryCall
        if call is not None and call.done:
            self._summaryCall = None
            self._finishSummary(call)
            if self._summaryAgain:
                self._summaryAgain = False
                self.refreshSummary()
        for run_path, call in list(self._stopCalls.items()):
            if call.done:
                del self._stopCalls[run_path]
                self._finishStop(run_path, call)
        if self._reviewRun is None and self._summaryCall is None and not self._stopCalls:
            self._workTimer.stop()

    def _finishReview(self, run):
        from BrainMetSegLib.errors import BrainMetSegError

        request, self._reviewRequest = self._reviewRequest, None
        if run.cancelRequested or run.cancelled:
            self.ui.reviewStatusLabel.text = _("Cancelled: nothing was added to the scene.")
            self.ui.reviewProgressBar.value = 0
            return
        if run.error is not None:
            logging.error(run.errorDetails)
            self.ui.reviewStatusLabel.text = str(run.error)
            if not isinstance(run.error, BrainMetSegError):
                slicer.util.errorDisplay(_("Finding missed lesions failed: {error}").format(error=run.error),
                                         detailedText=run.errorDetails)
            return
        if not self.logic.nodesPresent(request):
            self.ui.reviewStatusLabel.text = _("The BRAVO volume or the annotation was removed meanwhile: run again.")
            return
        try:
            self._review = self.logic.startReview(run.prediction, request)
        except BrainMetSegError as error:
            self.ui.reviewStatusLabel.text = str(error)
            return
        self._fillCandidates()
        found, missed = len(run.prediction.lesions), len(self._review.candidates)
        lines = [_("The model found {found} lesion(s); {missed} of them are not in the annotation{rejected}.").format(
            found=found, missed=missed,
            rejected=_(" or rejected before") if request.rejected else "")]
        lines += [_("Warning: {warning}").format(warning=warning) for warning in run.prediction.warnings]
        self.ui.reviewStatusLabel.text = "\n".join(lines)

    def _clearReview(self):
        review, self._review = self._review, None
        if review is not None and review.candidates_node is not None \
                and slicer.mrmlScene.IsNodePresent(review.candidates_node):
            slicer.mrmlScene.RemoveNode(review.candidates_node)
        self.ui.missedLesionsListWidget.clear()
        self._updateReviewButtons()

    def _fillCandidates(self, row=0):
        """List the candidates not reviewed yet and select the one at `row` (or the last)."""
        listWidget = self.ui.missedLesionsListWidget
        wasBlocked = listWidget.blockSignals(True)
        listWidget.clear()
        for line in self.logic.describeCandidates(self._review.candidates):
            listWidget.addItem(line)
        listWidget.blockSignals(wasBlocked)
        if self._review.candidates:
            listWidget.setCurrentRow(min(row, len(self._review.candidates) - 1))
        self._updateReviewButtons()

    def _currentCandidate(self):
        row = self.ui.missedLesionsListWidget.currentRow
        if self._review is None or not 0 <= row < len(self._review.candidates):
            return None
        return self._review.candidates[row]

    def _updateReviewButtons(self):
        selected = self._currentCandidate() is not None
        self.ui.acceptButton.enabled = selected
        self.ui.rejectButton.enabled = selected

    def onCandidateSelected(self, row):
        lesion = self._currentCandidate()
        self._updateReviewButtons()
        if lesion is not None:
            self.logic.jumpTo(lesion)

    def onAcceptButton(self):
        from BrainMetSegLib.errors import BrainMetSegError

        lesion, row = self._currentCandidate(), self.ui.missedLesionsListWidget.currentRow
        if lesion is None:
            return
        try:
            segmentId = self.logic.acceptCandidate(self._review, lesion)
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("The lesion was not added: {error}").format(error=error))
            return
        self._fillCandidates(row)
        self.ui.reviewStatusLabel.text = _(
            "Added to '{annotation}' as segment {segment}. Press Add case to update the dataset's label.").format(
            annotation=self._review.annotation_node.GetName(), segment=segmentId)

    def onRejectButton(self):
        from BrainMetSegLib.errors import BrainMetSegError

        lesion, row = self._currentCandidate(), self.ui.missedLesionsListWidget.currentRow
        if lesion is None:
            return
        try:
            self.logic.rejectCandidate(self._review, lesion)
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("The rejection was not recorded: {error}\n\nAdd the case to the dataset "
                                       "first (Export to a dataset).").format(error=error))
            return
        self._fillCandidates(row)
        self.ui.reviewStatusLabel.text = _("Rejected: recorded for {case} in dataset.json (a known negative for "
                                           "training).").format(case=self._review.case_id)
        self.refreshSummary()

    # --- training form -------------------------------------------------------------------

    def _defaultRunName(self):
        dataset = os.path.basename(os.path.normpath(self._datasetRoot())) if self._datasetRoot() else "run"
        return f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"

    def _updateCensorRate(self):
        self.ui.censorRateSpinBox.enabled = CENSOR_MODES[self.ui.censorModeComboBox.currentIndex] != "none"

    def onCensorModeChanged(self, index=None):
        """Simulated censoring makes every training label partial: the preselected loss follows."""
        self._updateCensorRate()
        self._appliedLossDefault = None
        if self.libraryReady():
            self.refreshSummary()

    def onAssignValidationButton(self):
        from BrainMetSegLib.errors import BrainMetSegError
        from BrainMetSegLib.validation_split import assign_validation

        if not self.ensureLibrary():
            return
        try:
            moved = assign_validation(self._datasetRoot(), int(self.ui.validationCountSpinBox.value))
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("No case was moved: {error}").format(error=error))
            return
        slicer.util.showStatusMessage(_("Moved to val: {cases}").format(cases=", ".join(moved)), 5000)
        self.refreshSummary()

    def jobSpecFromForm(self):
        """The training form as a JobSpec (what Launch starts)."""
        from BrainMetSegLib.errors import BrainMetSegError
        from BrainMetSegLib.jobs import JobSpec

        dataset, runs = self._datasetRoot(), self.ui.runsFolderPathLineEdit.currentPath.strip()
        name = self.ui.runNameLineEdit.text.strip()
        if not dataset:
            raise BrainMetSegError(_("dataset folder: choose the dataset to train on (Export to a dataset)"))
        if not runs:
            raise BrainMetSegError(_("runs folder: choose where the run folder is written"))
        if not name or name != os.path.basename(name) or name.startswith("."):
            raise BrainMetSegError(_("run name: {name!r}; expected a plain folder name").format(name=name))
        init = self._initModel()
        return JobSpec(dataset=Path(dataset), run=Path(runs) / name,
                       loss=LOSSES[self.ui.lossComboBox.currentIndex], alpha=float(self.ui.alphaSpinBox.value),
                       beta=float(self.ui.betaSpinBox.value), backbone=BACKBONES[self.ui.backboneComboBox.currentIndex],
                       epochs=int(self.ui.epochsSpinBox.value), batch_size=int(self.ui.batchSizeSpinBox.value),
                       lr=float(self.ui.learningRateSpinBox.value),
                       init_model=str(init.path) if init is not None else None,
                       censor_mode=CENSOR_MODES[self.ui.censorModeComboBox.currentIndex],
                       censor_rate=float(self.ui.censorRateSpinBox.value),
                       gpus=GPU_CHOICES[self.ui.gpusComboBox.currentIndex])

    def onLaunchButton(self):
        from BrainMetSegLib.errors import BrainMetSegError

        if not self.ensureLibrary():
            return
        try:
            self.launchJob(self.jobSpecFromForm())
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("The job was not started: {error}").format(error=error))

    def launchJob(self, spec):
        """Start `spec` as a separate process, list it first and follow it; returns the Job."""
        from BrainMetSegLib.jobs import launch

        job = launch(spec)
        self._jobByRun[runKey(job.run)] = job
        self.ui.runNameLineEdit.text = self._defaultRunName()
        runs = str(Path(spec.run).expanduser().absolute().parent)
        if os.path.normpath(runs) != os.path.normpath(self.ui.runsFolderPathLineEdit.currentPath):
            self.ui.runsFolderPathLineEdit.currentPath = runs  # rebuilds the list from that folder
        self.refreshJobs(select=job.run)
        return job

    # --- jobs ----------------------------------------------------------------------------

    def onRunsFolderChanged(self, path):
        qt.QSettings().setValue(RUNS_DIRECTORY_SETTING, path)
        if self.libraryReady():
            self.refreshJobs()

    def refreshJobs(self, select=None):
        """Rebuild the jobs list from the runs folder, keeping the Job objects already followed."""
        from BrainMetSegLib.jobs import discover_jobs

        selected = self._selectedJob()
        wanted = runKey(select) if select is not None else (runKey(selected.run) if selected is not None else None)
        folder = self.ui.runsFolderPathLineEdit.currentPath.strip()
        found = discover_jobs(folder) if folder else []
        self._jobs = [self._jobByRun.setdefault(runKey(job.run), job) for job in found]
        listWidget = self.ui.jobsListWidget
        wasBlocked = listWidget.blockSignals(True)
        listWidget.clear()
        for job in self._jobs:
            listWidget.addItem(job.name)
        runs = [runKey(job.run) for job in self._jobs]
        listWidget.currentRow = runs.index(wanted) if wanted in runs else (0 if runs else -1)
        listWidget.blockSignals(wasBlocked)
        for row, job in enumerate(self._jobs):
            self._updateJobRow(row, job)
        self._shownHistory = None
        self._showSelectedJob()

    def _selectedJob(self):
        row = self.ui.jobsListWidget.currentRow
        return self._jobs[row] if 0 <= row < len(self._jobs) else None

    def _jobStatus(self, job):
        """The job's status, read now (only the events added since the last read)."""
        try:
            status = job.status()
        except Exception as error:  # a damaged job.json: say so in the list, keep the panel working
            from BrainMetSegLib.job_status import JobStatus

            status = JobStatus(state="unknown", message=str(error))
        self._statuses[runKey(job.run)] = status
        return status

    def _updateJobRow(self, row, job):
        status = self._jobStatus(job)
        stopping = runKey(job.run) in self._stopCalls
        item = self.ui.jobsListWidget.item(row)
        message = _("stopping: waiting for the checkpoint…") if stopping else status.message
        item.setText(f"{job.name}\n{message}")
        item.setToolTip(str(job.run))
        item.setForeground(qt.QBrush(qt.QColor(STATE_COLOURS.get(status.state, "#000000"))))
        return status

    def pollJobs(self):
        """Timer: refresh the running jobs (and runs of unknown state) and the selected job's view."""
        if not self.libraryReady():
            return
        self._jobTicks += 1
        if self._jobTicks % JOB_RESCAN_TICKS == 0:
            folder = self.ui.runsFolderPathLineEdit.currentPath.strip()
            from BrainMetSegLib.jobs import discover_jobs

            known = {runKey(job.run) for job in self._jobs}
            if folder and {runKey(job.run) for job in discover_jobs(folder)} != known:
                self.refreshJobs()
                return
        selected = self._selectedJob()
        for row, job in enumerate(self._jobs):
            previous = self._statuses.get(runKey(job.run))
            if job is selected or previous is None or previous.state in ("running", "unknown"):
                self._updateJobRow(row, job)
        self._showSelectedJob(readStatus=False)

    def onJobSelected(self, row):
        self._shownHistory = None
        self._showSelectedJob()

    def _showSelectedJob(self, readStatus=True):
        """Progress, state, curves and log of the selected job; the buttons that apply to it."""
        from BrainMetSegLib.job_status import format_duration

        job = self._selectedJob()
        if job is None:
            self.ui.jobProgressBar.value = 0
            self.ui.jobProgressBar.format = "%p%"
            self.ui.jobStatusLabel.text = _("No job in this runs folder yet.") if self.libraryReady() else \
                self.ui.jobStatusLabel.text
            self.ui.jobLogTextEdit.setPlainText("")
            for button in (self.ui.stopButton, self.ui.resumeButton, self.ui.copyCommandButton,
                           self.ui.useModelButton):
                button.enabled = False
            return
        status = self._statuses.get(runKey(job.run)) if not readStatus else None
        if status is None:
            status = self._updateJobRow(self._jobs.index(job), job)
        stopping = runKey(job.run) in self._stopCalls
        self.ui.jobProgressBar.value = int(round(100 * status.progress))
        self.ui.jobProgressBar.format = "%p%" if status.eta_s is None else \
            _("%p%, {left} left").format(left=format_duration(status.eta_s))
        lines = [html.escape(_("stopping: waiting for the checkpoint…") if stopping else status.message)]
        lines += [f'<span style="color:#a05a00;">{html.escape(warning)}</span>' for warning in status.warnings]
        self.ui.jobStatusLabel.text = "<br>".join(lines)
        log = job.log_tail(LOG_TAIL_LINES)
        if log != self.ui.jobLogTextEdit.toPlainText():
            self.ui.jobLogTextEdit.setPlainText(log)
            self.ui.jobLogTextEdit.moveCursor(qt.QTextCursor.End)
        self._showHistory(job, status)
        self.ui.stopButton.enabled = status.state == "running" and not stopping
        self.ui.resumeButton.enabled = status.state in RESUMABLE_STATES and not stopping
        self.ui.copyCommandButton.enabled = True
        self.ui.useModelButton.enabled = status.state == "finished"

    def _showHistory(self, job, status):
        """Redraw the curves when the job logged something new (or another job was selected)."""
        history = job.history()
        key = (runKey(job.run), len(history.steps), len(history.epochs), status.total_steps)
        if key == self._shownHistory:
            return
        self._shownHistory = key
        self.logic.showHistory(self._trainingChart(), history, status, job.name)

    def _trainingChart(self):
        """The chart shown in the panel's plot widget, made again after the scene was closed."""
        if self._chart is None or not self._chart.present() or not slicer.mrmlScene.IsNodePresent(self._plotView):
            self._chart, self._plotView = self.logic.addTrainingChart()
            self.ui.trainingPlotWidget.setMRMLPlotViewNode(self._plotView)
        return self._chart

    def onStopButton(self):
        from BrainMetSegLib.jobs import Job, stop

        job = self._selectedJob()
        if job is None or runKey(job.run) in self._stopCalls:
            return
        # a Job object of its own: the worker thread must not share the followed one's event reader
        self._stopCalls[runKey(job.run)] = BackgroundCall(stop, Job(job.run))
        self._workTimer.start()
        self._showSelectedJob()

    def _finishStop(self, run, call):
        if call.error is not None:
            logging.error(call.errorDetails)
            slicer.util.errorDisplay(_("Stopping the job failed: {error}").format(error=call.error),
                                     detailedText=call.errorDetails)
        job = self._jobByRun.get(run)
        if job is not None and job in self._jobs:
            self._updateJobRow(self._jobs.index(job), job)
        self._showSelectedJob()

    def onResumeButton(self):
        from BrainMetSegLib.errors import BrainMetSegError
        from BrainMetSegLib.jobs import resume

        job = self._selectedJob()
        if job is None or not self.ensureLibrary():
            return
        try:
            resumed = resume(job)
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("The job was not resumed: {error}").format(error=error))
            return
        self._jobByRun[runKey(resumed.run)] = resumed
        self.refreshJobs(select=resumed.run)

    def onCopyCommandButton(self):
        from BrainMetSegLib.errors import BrainMetSegError
        from BrainMetSegLib.jobs import copy_command

        job = self._selectedJob()
        if job is None:
            return
        try:
            command = copy_command(job.spec())
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("No command for this run: {error}").format(error=error))
            return
        qt.QApplication.clipboard().setText(command)
        slicer.util.showStatusMessage(_("Copied: {command}").format(command=command), 8000)

    def onUseModelButton(self):
        from BrainMetSegLib.errors import BrainMetSegError

        job = self._selectedJob()
        if job is None:
            return
        directory = inferenceModule().modelsDirectory()
        try:
            name = self.logic.modelName(job)
            overwrite = False
            if os.path.lexists(os.path.join(directory, name)):
                question = _("A model named '{name}' is already in {folder}. Replace it with this job's model?").format(
                    name=name, folder=directory)
                if not slicer.util.confirmYesNoDisplay(question, windowTitle=_("Replace model")):
                    return
                overwrite = True
            with slicer.util.WaitCursor():
                target = self.logic.handOff(job, directory, overwrite=overwrite)
        except BrainMetSegError as error:
            slicer.util.errorDisplay(_("The model was not handed over: {error}").format(error=error))
            return
        self.refreshModels()
        inferenceWidget = getattr(slicer.modules, "BrainMetSegWidget", None)
        if inferenceWidget is not None:
            inferenceWidget.refreshModels()
        slicer.util.showStatusMessage(_("Model '{name}' is now in {folder}: the BrainMetSeg module lists it.").format(
            name=name, folder=target.parent), 8000)


# ------------------------------------------------------------------------------ logic

class BrainMetSegTrainLogic(ScriptedLoadableModuleLogic):
    """The panel's calls into the library (BrainMetSegLib and its scene package), which also runs
    without Slicer. The inference module's logic is reused for the inputs and the model."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.inference = inferenceModule().BrainMetSegLogic()

    def getParameterNode(self):
        return BrainMetSegTrainParameterNode(super().getParameterNode())

    # --- inputs

    @staticmethod
    def missingInputs(parameterNode):
        """Titles of the inputs not selected yet: sequences in channel order, then the annotation."""
        missing = inferenceModule().BrainMetSegLogic.missingInputs(parameterNode)
        if parameterNode.annotation is None:
            missing.append(_("annotation (segmentation)"))
        return missing

    @staticmethod
    def inputProblems(parameterNode):
        """Why a case cannot be exported or reviewed yet (empty: it can)."""
        problems = inferenceModule().BrainMetSegLogic.inputProblems(parameterNode)
        if parameterNode.annotation is None:
            problems.append(_("select the annotation (the segmentation drawn on the case)"))
        return problems

    # --- export

    @staticmethod
    def caseExists(datasetRoot, caseId):
        return bool(datasetRoot) and bool(caseId) and os.path.lexists(os.path.join(datasetRoot, caseId))

    @staticmethod
    def exportCase(parameterNode, datasetRoot, caseId, labelStatus, split, overwrite=False):
        """Write the selected case to the dataset (see scene.export.export_case)."""
        from BrainMetSegLib.roles import ROLES
        from BrainMetSegLib.scene.export import export_case

        volumes = {role: getattr(parameterNode, role) for role in ROLES}
        return export_case(datasetRoot, caseId, volumes, parameterNode.annotation, label_status=labelStatus,
                           split=split, overwrite=overwrite)

    # --- review

    def reviewDevice(self):
        """The device chosen in the BrainMetSeg panel (the same computer, the same choice)."""
        inference = inferenceModule()
        device = qt.QSettings().value(inference.DEVICE_SETTING, inference.DEVICES[0])
        return device if device in inference.DEVICES else inference.DEVICES[0]

    @staticmethod
    def reviewRequest(parameterNode, datasetRoot, caseId):
        """Copy the case out of the scene (main thread) for a search in a worker thread: the four
        sequences, the annotation on the BRAVO grid, and the case's rejected candidates when the
        dataset holds the case."""
        from BrainMetSegLib.errors import BrainMetSegError
        from BrainMetSegLib.scene.review_session import read_review_request

        problems = BrainMetSegTrainLogic.inputProblems(parameterNode)
        if problems:
            raise BrainMetSegError("; ".join(problems))
        sceneInputs = inferenceModule().BrainMetSegLogic.sceneInputs(parameterNode)
        return read_review_request(sceneInputs, parameterNode.annotation, datasetRoot, caseId)

    @staticmethod
    def nodesPresent(request):
        from BrainMetSegLib.scene.review_session import nodes_present

        return nodes_present(request)

    @staticmethod
    def startReview(prediction, request):
        """The candidates: predicted lesions neither in the annotation nor rejected, shown in a
        segmentation node of their own."""
        from BrainMetSegLib.scene.review_session import start_review

        return start_review(prediction, request)

    @staticmethod
    def describeCandidates(candidates):
        from BrainMetSegLib.scene.review_session import candidate_lines

        return candidate_lines(candidates)

    @staticmethod
    def jumpTo(lesion):
        from BrainMetSegLib.scene.review import jump_to

        return jump_to(lesion)

    @staticmethod
    def acceptCandidate(review, lesion):
        """Add the lesion to the annotation as a new segment (it leaves the candidates); returns its ID."""
        from BrainMetSegLib.scene.review_session import accept_candidate

        return accept_candidate(review, lesion)

    @staticmethod
    def rejectCandidate(review, lesion):
        """Record the lesion's centroid as rejected for the case in dataset.json (it leaves the candidates)."""
        from BrainMetSegLib.scene.review_session import reject_candidate

        return reject_candidate(review, lesion)

    # --- training

    @staticmethod
    def addTrainingChart():
        """The panel's training chart and the plot view node that shows it in the panel."""
        from BrainMetSegLib.scene.training_plot import add_panel_plot_view, add_training_chart

        chart = add_training_chart()
        owner = BrainMetSegTrainLogic().getParameterNode().parameterNode
        return chart, add_panel_plot_view(chart, owner)

    @staticmethod
    def showHistory(chart, history, status, title):
        """Draw a job's curves, the logged steps placed on the epoch axis by the job's totals."""
        from BrainMetSegLib.scene.training_plot import show_history
        from BrainMetSegLib.training_curves import steps_per_epoch

        return show_history(chart, history, steps_per_epoch(status.total_steps, status.epochs), title)

    @staticmethod
    def modelName(job):
        """The name a job's model gets in the models folder (its model.json's)."""
        from BrainMetSegLib.model_folder import read_model_config

        return read_model_config(job.model_folder).name

    @staticmethod
    def handOff(job, modelsDirectory, overwrite=False):
        from BrainMetSegLib.jobs import hand_off

        return hand_off(job, modelsDirectory, overwrite=overwrite)


# ------------------------------------------------------------------------------ self-test

class BrainMetSegTrainTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest through slicer_add_python_unittest).

    Everything is real and small: a synthetic study made by the library, a dataset folder, a
    training job launched as a separate process on the CPU (frames of 48 pixels of 4 mm, a few
    hundred steps of MobileNetV3: a minute or two), stopped, resumed, followed to the end and
    handed to the models folder, whose model then reviews a case. The user's settings are put
    back afterwards.
    """

    SETTINGS = (DATASET_SETTING, RUNS_DIRECTORY_SETTING, REVIEW_MODEL_SETTING)
    TINY = {"in_plane_size": 48, "pixel_spacing": 4.0, "slice_spacing": 4.0, "workers": 1, "log_every": 1,
            "checkpoint_every": 0, "steps_per_epoch": 200}
    """Options the form does not offer, making the job tiny (JobSpec.options)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        import tempfile

        inference = inferenceModule()
        self.assertTrue(inference.installPythonDependencies(), "the library's Python packages are needed")
        settings = qt.QSettings()
        keys = self.SETTINGS + (inference.MODELS_DIRECTORY_SETTING,)
        previous = {key: settings.value(key) for key in keys}
        try:
            with tempfile.TemporaryDirectory(prefix="BrainMetSegTrainTest-") as folder:
                self.workFolder = Path(folder)
                settings.setValue(inference.MODELS_DIRECTORY_SETTING, str(self.workFolder / "models"))
                self.setUp()
                self.test_missing_inputs()
                self.setUp()
                self.test_export_case_and_read_it_back()
                self.setUp()
                self.test_training_job_from_launch_to_hand_off()
                self.setUp()
                self.test_missed_lesion_review()
        finally:
            for key, value in previous.items():
                if value is None:
                    settings.remove(key)
                else:
                    settings.setValue(key, value)
            widget = self._widget()
            for pathEdit, key, default in ((widget.ui.datasetPathLineEdit, DATASET_SETTING, ""),
                                           (widget.ui.runsFolderPathLineEdit, RUNS_DIRECTORY_SETTING,
                                            defaultRunsDirectory())):
                pathEdit.currentPath = str(settings.value(key, default) or default)
            widget.refreshModels()

    # --- helpers

    @staticmethod
    def _widget():
        slicer.util.selectModule("BrainMetSegTrain")
        return slicer.modules.brainmetsegtrain.widgetRepresentation().self()

    @staticmethod
    def _wait(condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            slicer.app.processEvents()
            value = condition()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"{what}: not within {timeout} s")

    def _study(self, seed=5):
        """A small synthetic study (four volumes named like DICOM series) and its label as the annotation."""
        from BrainMetSegLib.roles import ROLES
        from BrainMetSegLib.scene.volume_nodes import add_volume_node
        from BrainMetSegLib.synth import make_case
        from BrainMetSegLib.volumes import Volume

        names = {"t1_pre": "3: AX T1 SE pre", "t1_gd": "4: AX T1 SE +C", "bravo": "5: AX BRAVO +C",
                 "flair": "2: AX T2 FLAIR"}
        case = make_case(seed=seed, small=True)
        self.assertTrue(case.label.any(), f"synthetic case {seed} has no lesion to export")
        parameterNode = BrainMetSegTrainLogic().getParameterNode()
        for channel, role in enumerate(ROLES):
            setattr(parameterNode, role, add_volume_node(Volume(case.images[channel], case.affine), names[role]))
        parameterNode.annotation = self._segmentation(Volume(case.label, case.affine), "annotation")
        return parameterNode, case

    @staticmethod
    def _segmentation(label, name):
        """A segmentation node holding `label` (one segment, or one empty segment for an all-zero label)."""
        from BrainMetSegLib.scene.volume_nodes import add_volume_node

        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        node.CreateDefaultDisplayNodes()
        if label.array.any():
            labelmap = add_volume_node(label, f"{name} labelmap", "vtkMRMLLabelMapVolumeNode")
            slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, node)
            slicer.mrmlScene.RemoveNode(labelmap)
        else:
            node.GetSegmentation().AddEmptySegment("lesion")
        return node

    # --- tests

    def test_missing_inputs(self):
        """The annotation is required besides the four sequences, and reported last."""
        parameterNode = BrainMetSegTrainLogic().getParameterNode()
        self.assertEqual(len(BrainMetSegTrainLogic.missingInputs(parameterNode)), 5)
        for role in ("t1_pre", "t1_gd", "bravo", "flair"):
            setattr(parameterNode, role, slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", role))
        self.assertEqual(len(BrainMetSegTrainLogic.missingInputs(parameterNode)), 1)
        parameterNode.annotation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
        self.assertEqual(BrainMetSegTrainLogic.missingInputs(parameterNode), [])

    def test_export_case_and_read_it_back(self):
        """Add case writes the scene's case to a new dataset folder; the dataset reader reads the same
        voxels back; an existing case is refused without confirmation; the summary counts it."""
        import numpy as np

        from BrainMetSegLib.dataset import read_dataset
        from BrainMetSegLib.errors import BrainMetSegError

        widget = self._widget()
        root = self.workFolder / "dataset"
        widget.ui.datasetPathLineEdit.currentPath = str(root)
        parameterNode, case = self._study()
        self._wait(lambda: widget.ui.addCaseButton.enabled, 5, "Add case enabled")
        self.assertEqual(widget.ui.caseIdLineEdit.text, "Mets_001")
        widget.ui.partialRadioButton.checked = True
        widget.ui.splitComboBox.currentIndex = widget.ui.splitComboBox.findText("val")
        widget.ui.addCaseButton.click()

        caseEntry = read_dataset(root).get("Mets_001")
        self.assertEqual((caseEntry.split, caseEntry.label_status), ("val", "partial"))
        written = caseEntry.load()
        np.testing.assert_array_equal(written.label, case.label)
        np.testing.assert_allclose(written.affine, case.affine, atol=1e-4)
        np.testing.assert_allclose(written.images, case.images, rtol=1e-5, atol=1e-3)
        self.assertIn("Mets_001", widget.ui.exportStatusLabel.text)
        with self.assertRaises(BrainMetSegError) as refused:
            BrainMetSegTrainLogic.exportCase(parameterNode, str(root), "Mets_001", "complete", "train")
        self.assertIn("Mets_001", str(refused.exception))
        self.assertTrue(BrainMetSegTrainLogic.caseExists(str(root), "Mets_001"))
        text = self._wait(lambda: widget._summaryCall is None and "total" in
                          widget.ui.datasetSummaryTextEdit.toPlainText() and
                          widget.ui.datasetSummaryTextEdit.toPlainText(), 60, "dataset summary")
        total = next(line for line in text.splitlines() if line.startswith("total")).split()
        self.assertEqual(total[1:4], ["1", "0", "1"])  # cases, complete, partial

    def test_training_job_from_launch_to_hand_off(self):
        """Launch from the form, follow, stop, resume, finish, copy the command and hand the model over."""
        import dataclasses

        from BrainMetSegLib.dataset import read_dataset, write_dataset_json
        from BrainMetSegLib.scene.models import model_entries
        from BrainMetSegLib.scene.training_plot import X_COLUMN
        from BrainMetSegLib.synth import write_cohort
        from BrainMetSegLib.training_curves import TRAIN_LOSS

        widget = self._widget()
        cohort = self.workFolder / "cohort"
        write_cohort(cohort, 3, seed=0, preset_name="small")
        widget.ui.datasetPathLineEdit.currentPath = str(cohort)
        self._wait(lambda: widget._summaryCall is None and widget.ui.lossNoteLabel.text, 60, "loss preselected")
        self.assertEqual(LOSSES[widget.ui.lossComboBox.currentIndex], "ce")  # complete labels
        dataset = read_dataset(cohort)
        dataset.split("train")[0].label_status = "partial"
        write_dataset_json(cohort, dataset.cases)
        widget.refreshSummary()
        self._wait(lambda: LOSSES[widget.ui.lossComboBox.currentIndex] == "lopsided", 60, "lopsided preselected")
        self.assertAlmostEqual(widget.ui.betaSpinBox.value, 0.1)

        widget.ui.backboneComboBox.currentIndex = BACKBONES.index("mobilenet_v3_large")
        widget.ui.gpusComboBox.currentIndex = GPU_CHOICES.index(0)
        widget.ui.epochsSpinBox.value = 1
        widget.ui.batchSizeSpinBox.value = 2
        widget.ui.runsFolderPathLineEdit.currentPath = str(self.workFolder / "runs")
        widget.ui.runNameLineEdit.text = "selftest-job"
        spec = dataclasses.replace(widget.jobSpecFromForm(), options=dict(self.TINY))
        self.assertEqual((spec.loss, spec.gpus, spec.epochs), ("lopsided", 0, 1))
        job = widget.launchJob(spec)
        self.assertEqual(widget.ui.jobsListWidget.count, 1)
        self.assertIs(widget._selectedJob(), job)

        def state():
            widget.pollJobs()
            return widget._statuses[runKey(job.run)]

        self._wait(lambda: state().step >= 1, 300, "first training step")
        widget.ui.stopButton.click()
        self._wait(lambda: state().state == "stopped" and not widget._stopCalls, 180, "job stopped")
        self.assertTrue(widget.ui.resumeButton.enabled)
        widget.ui.resumeButton.click()
        self._wait(lambda: state().state in ("finished", "failed"), 600, "job finished")
        self.assertEqual(state().state, "finished", widget.ui.jobLogTextEdit.toPlainText())
        widget._showSelectedJob()
        self.assertEqual(widget.ui.jobProgressBar.value, 100)
        self.assertTrue(widget.ui.jobLogTextEdit.toPlainText())
        points = slicer.util.arrayFromTableColumn(widget._chart.tables[TRAIN_LOSS], X_COLUMN)
        self.assertEqual(list(points), [1.0])

        widget.ui.copyCommandButton.click()
        self.assertTrue(qt.QApplication.clipboard().text().startswith("brainmetseg train --dataset"))
        self.assertTrue(widget.ui.useModelButton.enabled)
        widget.ui.useModelButton.click()
        names = [entry.name for entry in model_entries(inferenceModule().modelsDirectory())]
        self.assertEqual(names, ["selftest-job"])
        self.assertEqual([entry.name for entry in widget._models], ["selftest-job"])  # the review lists it

    def test_missed_lesion_review(self):
        """On a case whose annotation lacks every lesion the model finds, each of them is offered,
        most confident first; accept adds a segment, reject is recorded, and neither comes back."""
        import numpy as np

        from BrainMetSegLib.dataset import read_dataset
        from BrainMetSegLib.negatives import DEFAULT_RADIUS_MM
        from BrainMetSegLib.volumes import Volume

        widget = self._widget()
        widget.refreshModels()
        names = [entry.name for entry in widget._models]
        self.assertIn("selftest-job", names, "the training test hands this model over")
        widget.ui.reviewModelComboBox.currentIndex = names.index("selftest-job")
        root = self.workFolder / "dataset"
        widget.ui.datasetPathLineEdit.currentPath = str(root)
        parameterNode, case = self._study(seed=9)
        self._wait(lambda: widget.ui.addCaseButton.enabled, 5, "Add case enabled")
        widget.ui.addCaseButton.click()  # the case must be in the dataset for a rejection to be recorded
        caseId = widget.ui.caseIdLineEdit.text
        self.assertIn(caseId, read_dataset(root).ids)
        empty = self._segmentation(Volume(np.zeros(case.label.shape, dtype=np.uint8), case.affine), "quick annotation")
        parameterNode.annotation = empty

        def find():
            widget.ui.findMissedButton.click()
            self._wait(lambda: widget._reviewRun is None, 300, "missed-lesion search")
            return widget._review

        review = find()
        self.assertIsNotNone(review, widget.ui.reviewStatusLabel.text)
        lesions = review.prediction.lesions
        self.assertGreater(len(lesions), 0, "the tiny model found no lesion; the checks below need one")
        mostConfidentFirst = sorted(lesions, key=lambda lesion: (-lesion.confidence, -lesion.voxels, lesion.index))
        self.assertEqual([lesion.index for lesion in review.candidates],
                         [lesion.index for lesion in mostConfidentFirst])
        self.assertEqual(widget.ui.missedLesionsListWidget.count, len(lesions))
        first = review.candidates[0]
        sliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
        self.assertAlmostEqual(sliceNode.GetSliceToRAS().GetElement(2, 3), first.centroid_ras[2],
                               delta=float(case.spacing.max()))

        segments = empty.GetSegmentation().GetNumberOfSegments()
        widget.ui.acceptButton.click()
        self.assertEqual(empty.GetSegmentation().GetNumberOfSegments(), segments + 1)
        self.assertEqual(widget.ui.missedLesionsListWidget.count, len(lesions) - 1)
        rejected = None
        if review.candidates:
            rejected = review.candidates[0]
            widget.ui.rejectButton.click()
            recorded = read_dataset(root).get(caseId).rejected
            np.testing.assert_allclose(recorded[-1], rejected.centroid_ras)

        again = find()
        offered = [lesion.index for lesion in again.candidates]
        # accepted: now in the annotation; rejected: its centroid (and whatever lies within the
        # known-negative radius of it) is not offered again; every other lesion still is
        expected = [lesion.index for lesion in mostConfidentFirst[1:]
                    if rejected is None or np.linalg.norm(np.subtract(lesion.centroid_ras, rejected.centroid_ras))
                    > DEFAULT_RADIUS_MM]
        self.assertEqual(offered, expected)
        self.assertNotIn(first.index, offered)
        logging.info("BrainMetSegTrain self-test: review of %s passed", caseId)
