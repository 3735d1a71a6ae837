"""Training jobs: exact commands, status rules, and real `brainmetseg train` processes launched,
followed to the end, stopped mid-way, resumed, rediscovered and handed off to the models list."""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import pytest

from BrainMetSegLib.dataset import read_dataset, write_dataset_json
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.events import EventWriter, read_events
from BrainMetSegLib.job_status import job_history, job_status
from BrainMetSegLib.jobs import (JOB_FILE, LOG_FILE, Job, JobSpec, build_command, copy_command, default_loss_for,
                                 discover_jobs, hand_off, launch, resume, stop)
from BrainMetSegLib.jobs_process import find_process, start_detached, terminate_tree
from BrainMetSegLib.model_folder import list_models, read_model_config
from helpers_train import write_tiny_dataset

TINY = {"in_plane_size": 32, "pixel_spacing": 2.0, "slice_spacing": 2.0, "workers": 1, "log_every": 1,
        "checkpoint_every": 0}
"""Frames of 32 x 32 pixels of 2 mm (the tiny dataset's whole brain), one loader thread, every step logged."""
JOB_TIMEOUT_S = 420


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Launched jobs inherit this environment: one thread each on the shared test machine."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("jobs") / "data", statuses=["partial", "complete", "partial",
                                                                                  "complete"])


def tiny_spec(dataset: Path, run: Path, steps: int) -> JobSpec:
    return JobSpec(dataset=dataset, run=run, backbone="mobilenet_v3_large", epochs=1, batch_size=4, gpus=0,
                   options=dict(TINY, steps_per_epoch=steps))


def wait_until(predicate, timeout_s: float = JOB_TIMEOUT_S, every_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def wait_for_end(job: Job):
    return wait_until(lambda: (lambda s: None if s.active else s)(job.status()))


# ---------------------------------------------------------------------------------- commands


def test_build_command_single_process_lists_only_changed_options():
    spec = JobSpec(dataset=Path("/data/mets"), run=Path("/runs/a"), loss="bootstrap", alpha=2.0, beta=0.5,
                   epochs=3, gpus=0, options={"augment": False, "uniform_loss": True, "max_steps": 50})
    assert build_command(spec, python="/opt/py") == [
        "/opt/py", "-m", "BrainMetSegLib", "train", "--dataset", "/data/mets", "--out", "/runs/a",
        "--loss", "bootstrap", "--alpha", "2.0", "--beta", "0.5", "--uniform-loss", "--epochs", "3",
        "--max-steps", "50", "--no-augment", "--device", "cpu"]
    assert build_command(spec, python="/opt/py", resume=True)[-1] == "--resume"


def test_build_command_several_gpus_uses_torchrun():
    spec = JobSpec(dataset=Path("/data/mets"), run=Path("/runs/b"), backbone="resnet101", batch_size=32, lr=0.0005,
                   init_model="base model", censor_mode="size", censor_rate=0.3, gpus=4)
    assert build_command(spec, python="py") == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4", "-m", "BrainMetSegLib",
        "train", "--dataset", "/data/mets", "--out", "/runs/b", "--backbone", "resnet101", "--batch-size", "32",
        "--lr", "0.0005", "--censor-mode", "size", "--censor-rate", "0.3", "--init-model", "base model",
        "--device", "cuda"]


def test_copy_command_is_one_shell_line_for_a_server():
    spec = JobSpec(dataset=Path("/data/my mets"), run=Path("/runs/it's"), gpus=None, epochs=12)
    assert copy_command(spec) == "brainmetseg train --dataset '/data/my mets' --out '/runs/it'\"'\"'s' --epochs 12"
    spec.gpus = 2
    assert copy_command(spec) == ("torchrun --standalone --nproc_per_node 2 -m BrainMetSegLib train --dataset "
                                  "'/data/my mets' --out '/runs/it'\"'\"'s' --epochs 12 --device cuda")
    assert copy_command(JobSpec(dataset=Path("d"), run=Path("r"), gpus=1)) == \
        "brainmetseg train --dataset d --out r --device cuda"


def test_the_command_round_trips_through_the_trainers_parser():
    from BrainMetSegLib.cli import build_parser

    spec = JobSpec(dataset=Path("/d"), run=Path("/r"), loss="ce", beta=1.0, gpus=0,
                   options={"augment": False, "seed": 7, "pixel_spacing": 1.25})
    args = build_parser().parse_args(build_command(spec, python="py")[3:])
    given = spec.train_options()
    for name in ("loss", "beta", "augment", "seed", "pixel_spacing", "device", "dataset", "out"):
        assert getattr(args, name) == getattr(given, name), name


@pytest.mark.parametrize("changes, message", [
    ({"options": {"colour": 1}}, "training options: unknown option\\(s\\) colour"),
    ({"options": {"device": "cuda"}}, "training options: device are set by the job itself"),
    ({"gpus": -1}, "number of GPUs: -1"),
    ({"beta": 0.0}, "beta \\(--beta\\): 0.0; must be in \\(0, 1\\]"),
    ({"batch_size": 1}, "batch_size \\(--batch-size\\): 1; at least 2"),
])
def test_bad_specs_are_refused_naming_the_option(changes, message):
    spec = JobSpec(dataset=Path("/d"), run=Path("/r"))
    for name, value in changes.items():
        setattr(spec, name, value)
    with pytest.raises(BrainMetSegError, match=message):
        build_command(spec)


def test_default_loss_follows_the_label_status(dataset, tmp_path):
    assert (default_loss_for(dataset).loss, default_loss_for(dataset).alpha, default_loss_for(dataset).beta) == \
        ("lopsided", 3.0, 0.1)
    complete = write_tiny_dataset(tmp_path / "complete")
    choice = default_loss_for(complete)
    assert (choice.loss, choice.alpha, choice.beta) == ("ce", 3.0, 1.0)
    assert default_loss_for(read_dataset(complete), censor_mode="stochastic").loss == "lopsided"
    cases = read_dataset(complete).cases
    cases[0].label_status, cases[0].split = "partial", "test"  # a partial test case changes no training
    write_dataset_json(complete, cases)
    assert default_loss_for(complete).loss == "ce"


# ---------------------------------------------------------------------------------- status rules


def event(name, **fields):
    return dict({"event": name, "time": "2026-01-01T00:00:00.000+00:00"}, **fields)


def run_events(total=4, stop_after=None):
    events = [event("started", options={"epochs": 2})]
    for step in range(1, (stop_after or total) + 1):
        events.append(event("step", step=step, total_steps=total, epoch=1 + (step - 1) // 2, loss=1.0 / step,
                            eta_s=10.0 * (total - step)))
        if step % 2 == 0:
            events.append(event("epoch", epoch=step // 2, step=step, train_loss=0.5 / step, collapse=None, best_epoch=step // 2,
                                best_ap=0.1 * step, validation={"ap": 0.1 * step, "max_sensitivity": 0.2 * step}))
    return events


def test_status_of_a_running_job_subtracts_the_time_since_the_last_step():
    events = run_events(stop_after=1)
    written = datetime.fromisoformat(events[-1]["time"])
    status = job_status(events, 0, alive=True, now=written + timedelta(seconds=12))
    assert (status.state, status.step, status.total_steps, status.progress) == ("running", 1, 4, 0.25)
    assert status.eta_s == pytest.approx(18.0)
    assert status.message == "running: step 1 of 4 (25%), epoch 1 of 2, 18 s left"


def test_a_resumed_job_is_judged_on_its_own_launch_and_its_history_replaces_repeated_steps():
    first = run_events(stop_after=3) + [event("stopped", step=3)]
    second = [event("started", options={"epochs": 2})] + [e for e in run_events()[1:] if e.get("step", 0) >= 3]
    second[1] = dict(second[1], loss=0.123)  # step 3 again, after resuming from the step-2 checkpoint
    assert job_status(first, 0, alive=False).state == "stopped"
    assert job_status(first + second[:1], len(first), alive=True).state == "running"
    finished = first + second + [event("finished", step=4)]
    status = job_status(finished, len(first), alive=False)
    assert (status.state, status.progress, status.best_ap, status.best_epoch) == ("finished", 1.0, 0.4, 2)
    history = job_history(finished)
    assert history.steps == [1, 2, 3, 4]
    assert history.loss == [1.0, 0.5, 0.123, 0.25]
    assert history.epochs == [1, 2]
    assert history.ap == [pytest.approx(0.2), pytest.approx(0.4)]
    assert history.sensitivity == [pytest.approx(0.4), pytest.approx(0.8)]


def test_dead_processes_without_a_final_event():
    events = run_events(stop_after=1)
    assert job_status(events, 0, alive=False, stop_requested=True).state == "stopped"
    failed = job_status([], 0, alive=False, log_tail="Traceback...\nerror: /d: dataset folder not found\n")
    assert (failed.state, failed.error) == ("failed", "/d: dataset folder not found")
    assert job_status(events, 0, alive=False, exit_code=-9).state == "failed"
    killed = job_status(events, 0, alive=False)
    assert killed.state == "killed" and "killed, out of memory or crashed" in killed.message
    assert job_status(events, 0, alive=None).state == "unknown"
    failed_event = job_status(events + [event("failed", error="CUDA out of memory")], 0, alive=False)
    assert (failed_event.state, failed_event.error) == ("failed", "CUDA out of memory")


# ---------------------------------------------------------------------------------- processes


IGNORE_TERM = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               "child = [sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               "time.sleep(600)']; subprocess.Popen(child); print('ready', flush=True); time.sleep(600)")


def test_terminate_tree_kills_a_tree_that_ignores_terminate(tmp_path):
    with open(tmp_path / "log.txt", "ab") as log:
        process = start_detached([sys.executable, "-c", IGNORE_TERM], log, tmp_path)
    try:
        wait_until(lambda: "ready" in (tmp_path / "log.txt").read_text(), timeout_s=60)
        parent = find_process(process.pid, psutil.Process(process.pid).create_time())
        tree = wait_until(lambda: parent.children() and [parent] + parent.children(), timeout_s=60)
        assert parent.pid == process.pid and len(tree) == 2
        assert psutil.Process(process.pid).terminal() is None  # its own session: no controlling terminal
        killed = terminate_tree(parent, grace_s=0.5)
        assert sorted(p.pid for p in killed) == sorted(p.pid for p in tree)
        process.wait(timeout=10)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
    finally:
        if process.poll() is None:
            process.kill()


def test_a_job_refused_by_the_trainer_fails_with_its_message(dataset, tmp_path):
    spec = tiny_spec(dataset, tmp_path / "refused", steps=2)
    spec.init_model = "no-such-model"
    job = launch(spec)
    status = wait_for_end(job)
    assert status.state == "failed"
    assert status.error.startswith("model 'no-such-model': no such folder")
    assert wait_until(lambda: job.exit_code() is not None, timeout_s=60) and job.exit_code() == 2
    assert read_events(job.run / "events.jsonl") == []  # refused before the run started: the log says why
    record = json.loads((tmp_path / "refused" / JOB_FILE).read_text())
    assert record["command"][1:4] == ["-m", "BrainMetSegLib", "train"] and record["launches"] == 1
    assert record["spec"]["init_model"] == "no-such-model"
    with pytest.raises(BrainMetSegError, match="refused: already exists; resume that job or choose another run"):
        launch(tiny_spec(dataset, tmp_path / "refused", steps=2))
    with pytest.raises(BrainMetSegError, match="options.json: missing; the run never started"):
        resume(job)


# ---------------------------------------------------------------------------------- real training jobs


def test_launch_follow_to_the_end_and_hand_off_to_the_models_list(dataset, tmp_path, isolated_models_directory):
    job = launch(tiny_spec(dataset, tmp_path / "runs" / "first", steps=2))
    assert job.status().state == "running"
    status = wait_for_end(job)
    assert status.state == "finished", job.log_tail()
    assert (status.progress, status.step, status.total_steps, status.epochs) == (1.0, 2, 2, 1)
    assert wait_until(lambda: job.exit_code() is not None, timeout_s=60) and job.exit_code() == 0
    assert find_process(job.record()["pid"], job.record()["create_time"]) is None
    history = job.history()
    assert history.steps == [1, 2] and all(loss > 0 for loss in history.loss)
    assert history.epochs == [1] and history.ap[0] is not None and history.sensitivity[0] is not None
    assert "model: " in job.log_tail()
    assert [e["event"] for e in read_events(job.run / "events.jsonl")][-1] == "finished"

    target = hand_off(job)
    assert target == isolated_models_directory / "first"
    assert [(folder.name, config.name) for folder, config in list_models()] == [("first", "first")]
    with pytest.raises(BrainMetSegError, match=f"{target}: a model named 'first' already exists"):
        hand_off(job)
    renamed = hand_off(job, name="mets-v2")
    assert read_model_config(renamed).name == "mets-v2"
    assert read_model_config(job.model_folder).name == "first"  # the run's own card is untouched
    assert hand_off(job, overwrite=True) == target
    assert sorted(folder.name for folder, _ in list_models()) == ["first", "mets-v2"]
    assert not [p for p in isolated_models_directory.iterdir() if p.name.startswith(".")]
    with pytest.raises(BrainMetSegError, match="the job is finished; only a stopped, killed or failed job"):
        resume(job)


def test_stop_mid_way_then_resume_to_the_end_after_rediscovery(dataset, tmp_path, isolated_models_directory):
    runs = tmp_path / "runs"
    job = launch(tiny_spec(dataset, runs / "long", steps=8))
    try:
        wait_until(lambda: job.status().step >= 1)
        record = job.record()
        tree = [psutil.Process(record["pid"])] + psutil.Process(record["pid"]).children(recursive=True)
        status = stop(job)
    finally:
        if job.exit_code() is None:
            job._process.kill()
    assert status.state == "stopped", job.log_tail()
    assert 1 <= status.step < 8
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    events = read_events(job.run / "events.jsonl")
    assert events[-1]["event"] == "stopped" and events[-2]["event"] == "checkpoint"
    assert json.loads((job.run / JOB_FILE).read_text())["stop_requested"]
    with pytest.raises(BrainMetSegError, match="the job is stopped; only a finished job's model"):
        hand_off(job)

    (found,) = discover_jobs(runs)  # as after a Slicer restart: no process handle, only the folder
    assert found.run == job.run and found.status().state == "stopped"
    resumed = resume(found)
    status = wait_for_end(resumed)
    assert status.state == "finished", resumed.log_tail()
    assert status.step == 8 and resumed.history().steps == list(range(1, 9))
    record = json.loads((job.run / JOB_FILE).read_text())
    assert record["launches"] == 2 and "stop_requested" not in record
    assert "--resume" in record["command"]
    assert "--- resumed" in (job.run / LOG_FILE).read_text()
    started = [e for e in read_events(job.run / "events.jsonl") if e["event"] == "started"]
    assert len(started) == 2 and started[1]["resumed_from"] == events[-1]["step"]
    hand_off(discover_jobs(runs)[0], name="resumed")
    assert [folder.name for folder, _ in list_models()] == ["resumed"]


def test_discover_jobs_lists_runs_started_elsewhere_newest_first(tmp_path):
    runs = tmp_path / "runs"
    old = EventWriter(runs / "cli-old" / "events.jsonl")
    old.write("started", options={"epochs": 1})
    old.write("finished", step=3)
    time.sleep(0.05)
    EventWriter(runs / "cli-new" / "events.jsonl").write("started", options={"epochs": 1})
    (runs / "notes").mkdir()
    (runs / ".hidden").mkdir()
    jobs = discover_jobs(runs)
    assert [job.name for job in jobs] == ["cli-new", "cli-old"]
    assert [job.status().state for job in jobs] == ["unknown", "finished"]
    assert discover_jobs(tmp_path / "nowhere") == []


def test_default_python_inside_the_slicer_application_is_pythonslicer(tmp_path, monkeypatch):
    from BrainMetSegLib.jobs import default_python

    assert default_python() == sys.executable
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "SlicerApp-real"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert default_python() == str(launcher)


def test_log_tail_shows_the_last_state_of_progress_bars(tmp_path):
    (tmp_path / LOG_FILE).write_bytes(b"reading\ntraining:  10%\rtraining:  50%\rtraining: 100%\nmodel: /r/model\n")
    job = Job(tmp_path)
    assert job.log_tail(2) == "training: 100%\nmodel: /r/model"
    assert job.log_tail() == "reading\ntraining: 100%\nmodel: /r/model"
    assert Job(tmp_path / "none").log_tail() == ""
