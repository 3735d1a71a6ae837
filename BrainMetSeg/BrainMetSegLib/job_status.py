"""What a training job is doing, read from its events (DESIGN §Events) and whether it runs.

Pure functions of the event list plus what the caller knows about the process, so the rules
are tested without processes and the Slicer panel, after a restart, says the same as it did
before. The rules:

- Only the events of the current launch decide the state (a resumed run appends to the
  events of the run it continues, whose last word was `stopped`).
- A `finished`, `failed` or `stopped` event of the current launch is the state.
- Otherwise a live process is `running` (progress 0 until the first step is logged).
- A dead process without a final event: `stopped` when the user asked it to stop (a stop
  that came before the trainer could write the event), `failed` when it exited with an
  error (the CLI's `error:` line, or a non-zero exit status when the caller knows it),
  `killed` otherwise (killed from outside, out of memory, a crash, a power cut).
- Without any process information (a run started elsewhere) and no final event: `unknown`.

The plotted history keeps, for each step and epoch, the latest value: a resumed run repeats
the steps after its last checkpoint and those replace the lost ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

STATES = ("running", "finished", "failed", "stopped", "killed", "unknown")
FINAL_EVENTS = ("finished", "failed", "stopped")


@dataclass
class History:
    """Plot data: training loss per logged step, validation metrics per epoch (None: not measured)."""

    steps: List[int] = field(default_factory=list)
    loss: List[Optional[float]] = field(default_factory=list)
    epochs: List[int] = field(default_factory=list)
    train_loss: List[Optional[float]] = field(default_factory=list)
    ap: List[Optional[float]] = field(default_factory=list)
    sensitivity: List[Optional[float]] = field(default_factory=list)
    """Maximum sensitivity on the validation cases (recall over all predictions)."""


@dataclass
class JobStatus:
    state: str
    message: str
    step: int = 0
    total_steps: Optional[int] = None
    epoch: int = 0
    epochs: Optional[int] = None
    progress: float = 0.0
    eta_s: Optional[float] = None
    loss: Optional[float] = None
    best_epoch: Optional[int] = None
    best_ap: Optional[float] = None
    error: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    """Collapse warnings of the epochs so far (DESIGN §Method, warm-up)."""

    @property
    def active(self) -> bool:
        return self.state == "running"


def _time(event: Dict[str, Any]) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(str(event["time"]))
    except (KeyError, ValueError):
        return None


def _latest_by(events: Sequence[Dict[str, Any]], key: str) -> List[Dict[str, Any]]:
    """One event per value of `key` (the last one), sorted by that value."""
    latest: Dict[int, Dict[str, Any]] = {}
    for event in events:
        if isinstance(event.get(key), int):
            latest[event[key]] = event
    return [latest[value] for value in sorted(latest)]


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def job_history(events: Sequence[Dict[str, Any]]) -> History:
    history = History()
    for event in _latest_by([e for e in events if e.get("event") == "step"], "step"):
        history.steps.append(event["step"])
        history.loss.append(_number(event.get("loss")))
    for event in _latest_by([e for e in events if e.get("event") == "epoch"], "epoch"):
        validation = event.get("validation") or {}
        history.epochs.append(event["epoch"])
        history.train_loss.append(_number(event.get("train_loss")))
        history.ap.append(_number(validation.get("ap")))
        history.sensitivity.append(_number(validation.get("max_sensitivity")))
    return history


def _error_line(log_tail: str) -> Optional[str]:
    """The CLI's last `error: ...` line (a refusal before any event), without the prefix."""
    lines = [line.strip() for line in log_tail.splitlines() if line.strip().startswith("error:")]
    return lines[-1][len("error:"):].strip() if lines else None


def job_status(events: Sequence[Dict[str, Any]], launch_offset: int, alive: Optional[bool],
               stop_requested: bool = False, exit_code: Optional[int] = None, log_tail: str = "",
               now: Optional[datetime] = None) -> JobStatus:
    """The state of a job from its events (`launch_offset`: how many belong to earlier
    launches) and the process facts: `alive` None when unknown, `exit_code` when known."""
    current = list(events[launch_offset:])
    started = next((e for e in reversed(current) if e.get("event") == "started"), None)
    steps = [e for e in events if e.get("event") == "step"]
    epochs = [e for e in events if e.get("event") == "epoch"]
    status = JobStatus(state="running", message="")
    options = (started or next((e for e in reversed(events) if e.get("event") == "started"), {})).get("options", {})
    status.epochs = options.get("epochs") if isinstance(options.get("epochs"), int) else None
    if steps:
        last = steps[-1]
        status.step = int(last.get("step", 0))
        status.total_steps = last.get("total_steps")
        status.epoch = int(last.get("epoch", 0))
        status.loss = _number(last.get("loss"))
        if status.total_steps:
            status.progress = min(1.0, status.step / status.total_steps)
    if epochs:
        best = epochs[-1]
        status.best_epoch, status.best_ap = best.get("best_epoch"), _number(best.get("best_ap"))
        status.warnings = [e["collapse"] for e in _latest_by(epochs, "epoch") if e.get("collapse")]

    final = current[-1] if current and current[-1].get("event") in FINAL_EVENTS else None
    if final is not None:
        status.state = final["event"]
    elif alive:
        status.state = "running"
    elif alive is None:
        status.state = "unknown"
    elif stop_requested:
        status.state = "stopped"
    elif _error_line(log_tail) or (exit_code not in (None, 0)):
        status.state = "failed"
    else:
        status.state = "killed"

    if status.state == "finished":
        status.progress = 1.0
        status.step = int(final.get("step", status.step))
    if status.state == "failed":
        status.error = (final or {}).get("error") or _error_line(log_tail) or \
            (f"exit status {exit_code}" if exit_code is not None else None)
    if status.state == "running" and steps and steps[-1] in current:
        status.eta_s = _remaining(steps[-1], now)
    status.message = describe(status, started is not None)
    return status


def _remaining(step_event: Dict[str, Any], now: Optional[datetime]) -> Optional[float]:
    """The trainer's estimate, less the time since it was written."""
    eta = _number(step_event.get("eta_s"))
    written = _time(step_event)
    if eta is None or written is None:
        return eta
    elapsed = ((now or datetime.now(timezone.utc)) - written).total_seconds()
    return max(0.0, eta - max(0.0, elapsed))


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def describe(status: JobStatus, started: bool = True) -> str:
    """One line for the job list, e.g. 'running: step 120 of 600 (20%), epoch 2 of 10, 4 min 10 s left'."""
    where = ""
    if status.total_steps:
        where = f"step {status.step} of {status.total_steps} ({100 * status.progress:.0f}%)"
        if status.epochs:
            where += f", epoch {status.epoch} of {status.epochs}"
    best = f", best validation AP {status.best_ap:.3f} (epoch {status.best_epoch})" \
        if status.best_ap is not None else ""
    if status.state == "running":
        if not where:
            return "running: preparing the data" if started else "running: starting"
        left = f", {format_duration(status.eta_s)} left" if status.eta_s is not None else ""
        return f"running: {where}{left}{best}"
    if status.state == "finished":
        return f"finished{best}"
    if status.state == "failed":
        return f"failed: {status.error or 'see the log'}"
    if status.state == "stopped":
        return f"stopped at {where or 'the start'}; resume continues from the last checkpoint"
    if status.state == "killed":
        return f"ended without a word at {where or 'the start'} (killed, out of memory or crashed); see the log"
    return f"no process information (started outside this session?); last seen at {where or 'the start'}"
