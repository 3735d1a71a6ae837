"""events.jsonl: whole lines appended, readers that accept a line still being written."""
from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pytest

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.events import EventFollower, EventWriter, last_event, read_events


def test_events_are_json_lines_with_event_and_iso_time(tmp_path):
    path = tmp_path / "run" / "events.jsonl"
    writer = EventWriter(path)
    writer.write("started", run="RUN", options={"alpha": 3.0})
    writer.write("step", step=np.int64(10), loss=np.float32(0.5), lr=1e-3, eta_s=12.5)
    writer.write("finished", step=10, model=tmp_path / "model", summary={"collapse": []})

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["started", "step", "finished"]
    for event in events:
        datetime.fromisoformat(event["time"])
    assert events[1]["step"] == 10 and events[1]["loss"] == 0.5 and isinstance(events[1]["step"], int)
    assert events[2]["model"] == str(tmp_path / "model")
    assert read_events(path) == events


def test_nan_loss_is_written_as_null_not_invalid_json(tmp_path):
    path = tmp_path / "events.jsonl"
    EventWriter(path).write("step", step=1, loss=math.nan, lr=math.inf)
    record = json.loads(path.read_text())  # strict JSON parsers reject NaN
    assert record["loss"] is None and record["lr"] is None


def test_unknown_event_name_is_refused(tmp_path):
    with pytest.raises(BrainMetSegError, match="event 'progress': unknown"):
        EventWriter(tmp_path / "events.jsonl").write("progress", step=1)


def test_reader_leaves_out_a_partial_last_line(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.write("started", run="RUN")
    writer.write("step", step=2, loss=0.7)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"event": "step", "time": "2026-01-01T00:00:00+00:00", "st')  # killed mid-write
    events = read_events(path)
    assert [e["event"] for e in events] == ["started", "step"]
    assert last_event(path)["step"] == 2
    assert last_event(path, "started")["run"] == "RUN"
    assert last_event(path, "finished") is None


def test_follower_returns_only_new_complete_events_and_finishes_a_partial_line_later(tmp_path):
    path = tmp_path / "events.jsonl"
    follower = EventFollower(path)
    assert follower.read_new() == []  # the run has not created the file yet
    EventWriter(path).write("started", run="RUN")
    assert [e["event"] for e in follower.read_new()] == ["started"]
    assert follower.read_new() == []
    line = json.dumps({"event": "step", "time": "2026-01-01T00:00:00+00:00", "step": 5}) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line[:20])
        handle.flush()
        assert follower.read_new() == []
        handle.write(line[20:])
    assert [(e["event"], e["step"]) for e in follower.read_new()] == [("step", 5)]


def test_damaged_line_before_the_end_is_refused_with_file_and_line(tmp_path):
    path = tmp_path / "events.jsonl"
    EventWriter(path).write("started", run="RUN")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("not json\n")
    EventWriter(path).write("step", step=1)
    with pytest.raises(BrainMetSegError, match=r"events.jsonl: line 2 is not valid JSON"):
        read_events(path)
