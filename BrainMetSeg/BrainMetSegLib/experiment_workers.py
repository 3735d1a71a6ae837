"""Several runs of a grid at once, each worker a process of its own with its share of the cores.

Why: one training process does not keep two CPU cores busy (MobileNetV3's small convolutions
leave the second thread waiting, Python runs between kernels), so on a CPU two single-thread
processes finish a pair of `small` runs sooner than one two-thread process runs them one
after the other (README, "Running several runs at once"). On a GPU the workers share it.

Each worker is a spawned process that takes run after run from a queue and runs it exactly as
the one-process grid does (experiment.run_grid with that run alone), so resuming, skipping and
failure handling are the same. Its output goes to DIR/logs/<run id>.log, appended on a rerun.
Table 3's subset datasets are written by the caller before the workers start, so no two
workers write one. Ctrl-C in a terminal reaches every worker, whose trainer checkpoints and
stops; SIGTERM to this process is passed on to the workers once, to the same effect.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import BrainMetSegError
from .experiment_grid import Run

LOGS_FOLDER = "logs"
RESULT_POLL_S = 1.0
"""How often the parent looks whether a worker died without reporting (killed, out of memory)."""

Outcome = Tuple[str, Optional[str]]
"""(status, error) of one run: 'finished', 'failed' or 'stopped'."""


class WorkersStopped(Exception):
    """The workers were asked to stop (Ctrl-C, SIGTERM) and have stopped."""


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, as a batch system sets it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_workers(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BrainMetSegError(f"--workers: expected a positive integer, got {workers!r}")
    return workers


def threads_per_worker(workers: int, cores: Optional[int] = None) -> int:
    """The cores shared out evenly, at least one thread each."""
    return max(1, (available_cores() if cores is None else cores) // check_workers(workers))


def log_path(out: Path, run_id: str) -> Path:
    return Path(out) / LOGS_FOLDER / f"{run_id}.log"


def run_in_workers(runs: Sequence[Run], dataset_path: Path, out: Path, preset_document: Dict[str, Any],
                   device: str, workers: int, log: Callable[[str], None],
                   progress: Optional[Callable[[float, str], None]] = None) -> Dict[str, Outcome]:
    """Train and evaluate `runs` in `workers` processes; the outcome of each run by id.
    Raises WorkersStopped after the workers stopped on Ctrl-C or SIGTERM."""
    workers = min(check_workers(workers), len(runs))
    threads = threads_per_worker(workers)
    (Path(out) / LOGS_FOLDER).mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")  # no forked torch or OpenMP state
    tasks, results = context.Queue(), context.Queue()
    for run in runs:
        tasks.put(run)
    for _ in range(workers):
        tasks.put(None)
    processes = [context.Process(target=_work, name=f"experiment worker {number + 1}",
                                 args=(number + 1, str(dataset_path), str(out), preset_document, device, threads,
                                       tasks, results))
                 for number in range(workers)]
    log(f"{len(runs)} run(s) in {workers} worker processes of {threads} thread(s) each; "
        f"their output: {Path(out) / LOGS_FOLDER}/<run id>.log")
    for process in processes:
        process.start()
    outcomes: Dict[str, Outcome] = {}
    running: Dict[int, str] = {}
    stop = _StopForwarder(processes)
    stop.install()
    try:
        while len(outcomes) < len(runs):
            try:
                kind, number, run_id, status, text = results.get(timeout=RESULT_POLL_S)
            except queue.Empty:
                if not any(process.is_alive() for process in processes):
                    break
                continue
            _record((kind, number, run_id, status, text), outcomes, running)
            if kind == "started":
                log(f"worker {number}: {run_id} started (log: {log_path(out, run_id)})")
                continue
            log(f"[{len(outcomes)}/{len(runs)}] worker {number}: {run_id} {status}" + (f": {text}" if text else ""))
            if progress is not None:
                progress(len(outcomes) / len(runs), f"{len(outcomes)} of {len(runs)} runs done")
    except KeyboardInterrupt:  # Ctrl-C reached the workers too; they stop after a checkpoint
        stop.requested = True
    finally:
        for process in processes:
            process.join()
        stop.restore()
    _drain(results, outcomes, running)
    for number, run_id in running.items():
        if run_id not in outcomes:
            status = "stopped" if stop.requested else "failed"
            message = (f"worker {number} ended (exit code {processes[number - 1].exitcode}) during the run; "
                       f"see {log_path(out, run_id)}")
            outcomes[run_id] = (status, message)
            log(f"worker {number}: {run_id} {status}: {message}")
    if stop.requested or any(status == "stopped" for status, _ in outcomes.values()):
        raise WorkersStopped(f"stopped after {sum(s == 'finished' for s, _ in outcomes.values())} finished run(s)")
    return outcomes


def _drain(results: Any, outcomes: Dict[str, Outcome], running: Dict[int, str]) -> None:
    """Results the workers sent while this process was stopping."""
    while True:
        try:
            message = results.get(timeout=0.1)
        except Exception:  # empty, or a message cut short by the interrupt: nothing more to learn
            return
        _record(message, outcomes, running)


def _record(message: Tuple[str, int, str, Optional[str], Optional[str]], outcomes: Dict[str, Outcome],
            running: Dict[int, str]) -> None:
    """A worker's message: a run started on it, or its run done (with the error, if any)."""
    kind, number, run_id, status, text = message
    if kind == "started":
        running[number] = run_id
        return
    running.pop(number, None)
    outcomes[run_id] = (status, None if status in ("finished", "skipped") else text)


class _StopForwarder:
    """SIGTERM to the parent is passed on, once, to every worker (whose trainer checkpoints)."""

    def __init__(self, processes: List[Any]) -> None:
        self.processes = processes
        self.requested = False
        self.previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._forward)

    def _forward(self, number: int, frame: Any) -> None:
        if self.requested:
            return
        self.requested = True
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None


def _work(number: int, dataset_path: str, out: str, preset_document: Dict[str, Any], device: str, threads: int,
          tasks: Any, results: Any) -> None:
    """One worker: run after run from `tasks` until None, each with its output in its log."""
    import torch

    from .experiment import GridStopped, run_grid, scores_line
    from .experiment_presets import preset_from_json

    torch.set_num_threads(threads)
    preset = preset_from_json(preset_document, "experiment preset")
    while True:
        try:
            run = tasks.get()
        except KeyboardInterrupt:
            return
        if run is None:
            return
        results.put(("started", number, run.run_id, None, None))
        with open(log_path(Path(out), run.run_id), "a", encoding="utf-8") as log_file, _output_to(log_file):
            try:
                outcome = run_grid(Path(dataset_path), Path(out), preset, device=device, runs=[run],
                                   log=lambda message: print(message, file=sys.stderr, flush=True))[0]
            except (GridStopped, KeyboardInterrupt) as stopped:
                results.put(("done", number, run.run_id, "stopped", str(stopped) or "interrupted"))
                return
            except Exception as error:  # a run that cannot start (unreadable folder) must not hang the grid
                results.put(("done", number, run.run_id, "failed", str(error) or type(error).__name__))
                continue
        text = outcome.error if outcome.error else scores_line(outcome.evaluation["summary"])
        results.put(("done", number, run.run_id, outcome.status, text))


@contextlib.contextmanager
def _output_to(log_file: Any) -> Iterator[None]:
    """The process's stdout and stderr (file descriptors 1 and 2, so torch's and tqdm's output
    too) sent to `log_file` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for target, copy in zip((1, 2), saved):
            os.dup2(copy, target)
            os.close(copy)
