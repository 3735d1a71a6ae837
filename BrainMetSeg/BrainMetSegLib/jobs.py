"""Training jobs: the options form, the exact command, launch, follow, stop, resume, hand-off.

A job is a run folder RUN trained by `brainmetseg train` in a separate process (several
under torchrun), started with the Python that runs the caller (Slicer's, in Slicer). The
run folder is the job's only state, so jobs survive closing the panel and restarting Slicer:

- RUN/job.json (written here, atomically): pid and start time of the process, the command,
  the JobSpec, how many events earlier launches wrote, and a stop request when there is one;
- RUN/log.txt: the process's stdout and stderr (appended by each launch);
- RUN/events.jsonl, options.json, checkpoint.*, model/: written by the trainer.

A run started from the command line has no job.json; it is listed all the same, its status
read from its events alone, and it can be resumed (its options.json gives the spec).

The JobSpec holds what the Slicer form offers; any other trainer option goes in `options`
by its TrainOptions name. Only options that differ from the trainer's defaults appear on the
command line, so the command stays readable and means what `brainmetseg train --help` says.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from .atomic import atomic_write_json
from .dataset import Dataset, read_dataset
from .errors import BrainMetSegError
from .events import EVENTS_FILE, EventFollower, read_events
from .job_status import History, JobStatus, job_history, job_status
from .jobs_process import create_time, find_process, start_detached, terminate_tree
from .model_card import ModelConfig
from .model_folder import CONFIG_FILE, WEIGHTS_FILE, models_directory, read_model_config
from .train_options import OPTIONS_FILE, TrainOptions, check_options, cli_flag, read_options_file

PathLike = Union[str, "os.PathLike[str]"]

JOB_FILE = "job.json"
LOG_FILE = "log.txt"
MODEL_FOLDER = "model"
JOB_FORMAT = 1
PACKAGE = "BrainMetSegLib"
DEFAULT_STOP_GRACE_S = 60.0
"""How long a stopped trainer may take to finish its step and write the checkpoint before it
is killed (a ResNet-50 checkpoint with its optimiser state is a few hundred MB)."""
LOG_TAIL_BYTES = 32_768

_TRAIN_FIELDS = {field.name: field for field in dataclasses.fields(TrainOptions)}
_DEFAULTS = {name: field.default for name, field in _TRAIN_FIELDS.items()}
_CONTROLLED = ("dataset", "out", "resume", "device")
"""TrainOptions set from the JobSpec's own fields, never through `options`."""


def _default(name: str) -> Any:
    return dataclasses.field(default=_DEFAULTS[name])


@dataclasses.dataclass
class LossChoice:
    loss: str
    alpha: float
    beta: float


def default_loss_for(dataset: Union[Dataset, PathLike], censor_mode: str = "none") -> LossChoice:
    """The loss the form preselects: lopsided bootstrap (α 3, β 0.1, the paper's) when some
    training or validation label may miss lesions (`partial`, or censored for research),
    else weighted cross-entropy (β 1), which is what complete labels call for."""
    if not isinstance(dataset, Dataset):
        dataset = read_dataset(dataset)
    partial = any(case.label_status == "partial" for case in dataset.cases if case.split in ("train", "val"))
    if partial or censor_mode != "none":
        return LossChoice("lopsided", _DEFAULTS["alpha"], _DEFAULTS["beta"])
    return LossChoice("ce", _DEFAULTS["alpha"], 1.0)


@dataclasses.dataclass
class JobSpec:
    """The training form. `gpus`: None lets the trainer choose (a GPU when there is one), 0
    trains on the CPU, 1 on one GPU, N > 1 on N GPUs of this machine under torchrun."""

    dataset: Path
    run: Path
    loss: str = _default("loss")
    alpha: float = _default("alpha")
    beta: float = _default("beta")
    backbone: Optional[str] = _default("backbone")
    epochs: int = _default("epochs")
    batch_size: int = _default("batch_size")
    lr: float = _default("lr")
    init_model: Optional[str] = _default("init_model")
    censor_mode: str = _default("censor_mode")
    censor_rate: float = _default("censor_rate")
    censor_seed: int = _default("censor_seed")
    gpus: Optional[int] = None
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def device_name(self) -> str:
        if self.gpus is None:
            return "auto"
        return "cpu" if self.gpus == 0 else "cuda"

    def train_options(self, resume: bool = False) -> TrainOptions:
        """The trainer's options for this job, checked as the trainer checks them."""
        if self.gpus is not None and (isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0):
            raise BrainMetSegError(f"number of GPUs: {self.gpus!r}; expected 0 (CPU), 1, 2, ...")
        unknown = sorted(set(self.options) - set(_TRAIN_FIELDS))
        if unknown:
            raise BrainMetSegError(f"training options: unknown option(s) {', '.join(unknown)}")
        controlled = sorted(set(self.options) & set(_CONTROLLED))
        if controlled:
            raise BrainMetSegError(f"training options: {', '.join(controlled)} are set by the job itself "
                                   "(dataset, run folder, resume, number of GPUs)")
        options = TrainOptions(**{**_form_values(self), **self.options, "dataset": Path(self.dataset),
                                  "out": Path(self.run), "device": self.device_name(), "resume": resume})
        check_options(options)
        return options

    def to_json(self) -> Dict[str, Any]:
        document = dataclasses.asdict(self)
        document["dataset"], document["run"] = str(self.dataset), str(self.run)
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any], source: str) -> "JobSpec":
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(document) - names)
        if unknown or "dataset" not in document or "run" not in document:
            raise BrainMetSegError(f"{source}: not a job specification (unknown keys {unknown}, or no dataset/run)")
        values = dict(document)
        values["dataset"], values["run"] = Path(values["dataset"]), Path(values["run"])
        return cls(**values)

    @classmethod
    def from_train_options(cls, options: TrainOptions, gpus: Optional[int] = None) -> "JobSpec":
        """The spec of a run started elsewhere (its options.json), to resume it from here."""
        values = {name: getattr(options, name) for name in _FORM_FIELDS}
        extra = {name: getattr(options, name) for name in _TRAIN_FIELDS
                 if name not in _FORM_FIELDS and name not in _CONTROLLED and getattr(options, name) != _DEFAULTS[name]}
        if gpus is None and options.device != "auto":
            gpus = 0 if options.device == "cpu" else 1
        return cls(dataset=options.dataset, run=options.out, gpus=gpus, options=extra, **values)


_FORM_FIELDS = tuple(field.name for field in dataclasses.fields(JobSpec)
                    if field.name in _TRAIN_FIELDS and field.name not in _CONTROLLED)
"""The trainer options the form sets directly (loss, alpha, ..., censor_seed)."""


def _form_values(spec: JobSpec) -> Dict[str, Any]:
    return {name: getattr(spec, name) for name in _FORM_FIELDS}


# ---------------------------------------------------------------------------------- job files


def read_job_record(run: Path) -> Dict[str, Any]:
    """RUN/job.json, or {} when the run was not launched by this module."""
    path = Path(run) / JOB_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BrainMetSegError(f"{path}: unreadable job record ({error})") from None
    if not isinstance(document, dict) or document.get("format") != JOB_FORMAT:
        raise BrainMetSegError(f"{path}: not a job record of format {JOB_FORMAT}")
    return document


def write_job_record(run: Path, record: Mapping[str, Any]) -> None:
    atomic_write_json(Path(run) / JOB_FILE, dict(record))


# ---------------------------------------------------------------------------------- commands


def _argument_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def train_arguments(spec: JobSpec, resume: bool = False) -> List[str]:
    """`train --dataset D --out RUN` and every option that differs from the trainer's default."""
    options = spec.train_options(resume)
    arguments = ["train", "--dataset", str(spec.dataset), "--out", str(spec.run)]
    for name, field in _TRAIN_FIELDS.items():
        value = getattr(options, name)
        if name in ("dataset", "out") or value == _DEFAULTS[name]:
            continue
        if isinstance(_DEFAULTS[name], bool):
            arguments.append(cli_flag(field))
        else:
            arguments += [cli_flag(field), _argument_value(value)]
    return arguments


def _distributed(spec: JobSpec) -> bool:
    return spec.gpus is not None and spec.gpus > 1


def _torchrun_arguments(spec: JobSpec) -> List[str]:
    """--standalone picks a free rendezvous port, so two jobs on one machine do not collide."""
    return ["--standalone", "--nproc_per_node", str(spec.gpus), "-m", PACKAGE]


def build_command(spec: JobSpec, python: Optional[str] = None, resume: bool = False) -> List[str]:
    """The command launch() runs: `python -m BrainMetSegLib train ...`, or for several GPUs
    `python -m torch.distributed.run --standalone --nproc_per_node N -m BrainMetSegLib train ...`."""
    python = python or default_python()
    if _distributed(spec):
        return [python, "-m", "torch.distributed.run"] + _torchrun_arguments(spec) + train_arguments(spec, resume)
    return [python, "-m", PACKAGE] + train_arguments(spec, resume)


def copy_command(spec: JobSpec, resume: bool = False) -> str:
    """The same job as one shell line for a GPU server where the package is installed
    (`pip install`): `brainmetseg train ...` or `torchrun ... -m BrainMetSegLib train ...`.
    Paths are this machine's; the dataset must be copied with its dataset.json."""
    if _distributed(spec):
        words = ["torchrun"] + _torchrun_arguments(spec) + train_arguments(spec, resume)
    else:
        words = ["brainmetseg"] + train_arguments(spec, resume)
    return " ".join(shlex.quote(word) for word in words)


def default_python() -> str:
    """The Python running this code. Inside the Slicer application sys.executable is the
    application itself (SlicerApp-real), so its PythonSlicer launcher, which Slicer puts on
    PATH and which sets up Slicer's library paths, runs the job instead."""
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    return shutil.which("PythonSlicer") or sys.executable


def _environment() -> Dict[str, str]:
    """This environment with the library's folder first on PYTHONPATH (Slicer's module folder is
    on Slicer's sys.path but not on a child's)."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# ---------------------------------------------------------------------------------- jobs


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Job:
    """One run folder, followed incrementally (each status() reads only new events)."""

    def __init__(self, run: PathLike, process: Any = None) -> None:
        self.run = Path(run)
        self._process = process  # the Popen when launched by this Python, to collect its exit status
        self._follower = EventFollower(self.run / EVENTS_FILE)
        self._events: List[Dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"Job({str(self.run)!r})"

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def model_folder(self) -> Path:
        return self.run / MODEL_FOLDER

    def record(self) -> Dict[str, Any]:
        """job.json, or {} for a run started outside this module."""
        return read_job_record(self.run)

    def spec(self) -> JobSpec:
        record = self.record()
        if record:
            return JobSpec.from_json(record["spec"], str(self.run / JOB_FILE))
        given, _ = read_options_file(self.run)
        world = next((e.get("world_size") for e in self.events() if e.get("event") == "started"), None)
        return JobSpec.from_train_options(given, gpus=world if isinstance(world, int) and world > 1 else None)

    def events(self) -> List[Dict[str, Any]]:
        self._events.extend(self._follower.read_new())
        return self._events

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of RUN/log.txt (progress bars reduced to their last state)."""
        path = self.run / LOG_FILE
        try:
            with open(path, "rb") as handle:
                handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
                text = handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        rows = [row.rsplit("\r", 1)[-1] for row in text.replace("\r\n", "\n").rstrip("\n").split("\n")]
        return "\n".join(rows[-lines:])

    def exit_code(self) -> Optional[int]:
        return None if self._process is None else self._process.poll()

    def alive(self) -> Optional[bool]:
        """Whether the job's process runs; None when this run has no process information."""
        self.exit_code()  # collects a finished child, so it is not seen as a live zombie
        record = self.record()
        if not record:
            return None
        return find_process(record.get("pid"), record.get("create_time")) is not None

    def status(self) -> JobStatus:
        record = self.record()
        return job_status(self.events(), int(record.get("events_offset", 0)), self.alive(),
                          stop_requested=bool(record.get("stop_requested")), exit_code=self.exit_code(),
                          log_tail=self.log_tail(5))

    def history(self) -> History:
        return job_history(self.events())


def _start(spec: JobSpec, python: Optional[str], resume: bool, launches: int) -> Job:
    run = Path(spec.run)
    command = build_command(spec, python, resume)
    offset = len(read_events(run / EVENTS_FILE))
    with open(run / LOG_FILE, "ab") as log:
        if resume:
            log.write(f"\n--- resumed {_now()} ---\n".encode("utf-8"))
            log.flush()
        process = start_detached(command, log, run, _environment())
    write_job_record(run, {"format": JOB_FORMAT, "pid": process.pid, "create_time": create_time(process.pid),
                           "command": command, "started": _now(), "launches": launches,
                           "events_offset": offset, "spec": spec.to_json()})
    return Job(run, process)


def launch(spec: JobSpec, python: Optional[str] = None) -> Job:
    """Start a new run in spec.run (which must not exist yet, or be empty)."""
    spec = dataclasses.replace(spec, dataset=Path(spec.dataset).expanduser().absolute(),
                               run=Path(spec.run).expanduser().absolute())
    spec.train_options()
    if not spec.dataset.is_dir():
        raise BrainMetSegError(f"{spec.dataset}: dataset folder not found")
    if spec.run.exists() and (not spec.run.is_dir() or any(spec.run.iterdir())):
        raise BrainMetSegError(f"{spec.run}: already exists; resume that job or choose another run folder")
    spec.run.mkdir(parents=True, exist_ok=True)
    return _start(spec, python, resume=False, launches=1)


def resume(job: Job, python: Optional[str] = None) -> Job:
    """Relaunch a stopped, killed or failed job with --resume (same options, from its last checkpoint)."""
    status = job.status()
    if status.state in ("running", "finished"):
        raise BrainMetSegError(f"{job.run}: the job is {status.state}; only a stopped, killed or failed job "
                               "can be resumed")
    if job.alive():
        raise BrainMetSegError(f"{job.run}: the job's process is still exiting; resume it in a moment")
    if not (job.run / OPTIONS_FILE).is_file():
        raise BrainMetSegError(f"{job.run / OPTIONS_FILE}: missing; the run never started, so there is nothing to "
                               "resume: launch it anew")
    spec = job.spec()
    return _start(spec, python, resume=True, launches=int(job.record().get("launches", 0)) + 1)


def stop(job: Job, grace_s: float = DEFAULT_STOP_GRACE_S) -> JobStatus:
    """Stop the job's whole process tree (see jobs_process); blocks up to `grace_s` plus a few
    seconds, so a GUI calls it off its main thread. Returns the status afterwards."""
    record = job.record()
    process = find_process(record.get("pid"), record.get("create_time")) if record else None
    if process is None:
        return job.status()
    write_job_record(job.run, dict(record, stop_requested=_now()))
    terminate_tree(process, grace_s)
    job.exit_code()
    return job.status()


def discover_jobs(runs_root: PathLike) -> List[Job]:
    """Every run folder directly under `runs_root` (job.json, events.jsonl or options.json),
    most recently started first."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    runs = [folder for folder in root.iterdir() if folder.is_dir() and not folder.name.startswith(".")
            and any((folder / name).is_file() for name in (JOB_FILE, EVENTS_FILE, OPTIONS_FILE))]
    return [Job(folder) for folder in sorted(runs, key=_started_at, reverse=True)]


def _started_at(folder: Path) -> float:
    """When the run was last launched (job.json), else when the trainer last wrote its files."""
    text = read_job_record(folder).get("started")
    if text:
        return datetime.fromisoformat(str(text)).timestamp()
    return max((folder / name).stat().st_mtime for name in (EVENTS_FILE, OPTIONS_FILE) if (folder / name).is_file())


def hand_off(job: Job, models_dir: Optional[PathLike] = None, name: Optional[str] = None,
             overwrite: bool = False, link: bool = False) -> Path:
    """Put a finished job's model folder (the best epoch's) in the models directory, where
    BrainMetSeg and `--model NAME` find it. A copy by default, its model.json renamed to the
    folder's name so the selector shows that name; `link` makes a symbolic link instead (the
    run folder must then stay). An existing model of that name is replaced only with `overwrite`.
    """
    status = job.status()
    if status.state != "finished":
        raise BrainMetSegError(f"{job.run}: the job is {status.state}; only a finished job's model can be handed off")
    source = job.model_folder
    config = read_model_config(source)
    if not (source / WEIGHTS_FILE).is_file():
        raise BrainMetSegError(f"{source / WEIGHTS_FILE}: missing; the model folder is incomplete")
    name = config.name if name is None else name
    if not name or name.startswith(".") or "/" in name or "\\" in name or name in (".", ".."):
        raise BrainMetSegError(f"model name {name!r}: expected a plain folder name")
    directory = Path(models_dir) if models_dir is not None else models_directory()
    target = directory / name
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise BrainMetSegError(f"{target}: a model named {name!r} already exists; choose another name or "
                               "confirm to replace it")
    directory.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=directory))
    try:
        if link:
            staged.rmdir()
            try:
                os.symlink(source.resolve(), staged, target_is_directory=True)
            except OSError as error:
                raise BrainMetSegError(f"{target}: cannot create a link to {source} ({error}); copy the model "
                                       "instead") from None
        else:
            shutil.copytree(source, staged, dirs_exist_ok=True)
            if name != config.name:
                renamed = ModelConfig.from_json(dict(config.to_json(), name=name), str(staged / CONFIG_FILE))
                atomic_write_json(staged / CONFIG_FILE, renamed.to_json())
        _replace(staged, target)
    finally:
        if staged.is_symlink():
            staged.unlink()
        elif staged.exists():
            shutil.rmtree(staged)
    return target


def _replace(staged: Path, target: Path) -> None:
    """Move `staged` to `target`, the old target (if any) first moved aside then removed, so
    the models directory never shows a half-copied model."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        if old.is_symlink() or old.is_file():
            old.unlink()
        else:
            shutil.rmtree(old)
