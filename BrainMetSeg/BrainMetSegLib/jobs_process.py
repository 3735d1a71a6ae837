"""Background processes of training jobs: start detached, recognise later, stop as a tree.

A job must outlive the Slicer panel (and Slicer itself), so it is started in its own session
(POSIX) or process group without a console window (Windows) and recognised later by its pid
*and* its start time, because a pid is reused once the process is gone. Stopping uses psutil
on every OS: the whole tree (torchrun's agent and its workers, or the single trainer) gets a
terminate request, which the trainer answers by checkpointing and writing `stopped`; what
is still alive after a grace period is killed. On Windows terminate is already a hard kill
(TerminateProcess), so a stopped job resumes from its last periodic checkpoint there.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import IO, Dict, List, Mapping, Optional, Sequence

import psutil

CREATE_TIME_TOLERANCE_S = 0.05
"""psutil's start times have 10 ms resolution on Linux; a reused pid starts much later."""
KILL_WAIT_S = 10.0


def detach_options() -> Dict[str, object]:
    """Popen arguments that keep the child alive when its parent exits or its terminal closes."""
    if sys.platform == "win32":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def start_detached(command: Sequence[str], log: IO[bytes], cwd: Path,
                   env: Optional[Mapping[str, str]] = None) -> subprocess.Popen:
    """Start `command` with stdout and stderr appended to `log`, no stdin, detached."""
    return subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=str(cwd), env=None if env is None else dict(env), **detach_options())


def create_time(pid: int) -> Optional[float]:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def find_process(pid: Optional[int], started: Optional[float]) -> Optional[psutil.Process]:
    """The live process with this pid and start time (None when gone, reused or a zombie)."""
    if pid is None or started is None:
        return None
    try:
        process = psutil.Process(int(pid))
        if abs(process.create_time() - float(started)) > CREATE_TIME_TOLERANCE_S:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            try:
                process.wait(timeout=0)  # collect our own exited child (a job launched earlier in this session)
            except (psutil.TimeoutExpired, psutil.NoSuchProcess, ChildProcessError):
                pass
            return None
        return process
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def process_tree(process: psutil.Process) -> List[psutil.Process]:
    """The process and every descendant, children first (collected before anything is signalled,
    since orphans are re-parented and can no longer be found from the parent)."""
    try:
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    return children + [process]


def terminate_tree(process: psutil.Process, grace_s: float) -> List[psutil.Process]:
    """Terminate the tree, wait up to `grace_s` for it to exit, kill what is left; returns
    the processes that had to be killed."""
    tree = process_tree(process)
    for member in tree:
        try:
            member.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=max(0.0, grace_s))
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=KILL_WAIT_S)
    return alive
