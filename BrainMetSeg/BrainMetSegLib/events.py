"""RUN/events.jsonl: what a training run did, one JSON object per line (DESIGN §Events).

The Slicer module (and anyone with `tail -f`) follows a run while it is being written, and
a run can be killed at any instant, so the writer appends one whole line at a time and
flushes it, and the readers accept a partial last line: it is a line still being written,
not an error. A malformed line anywhere else is damage and is refused naming the file and
the line number.
"""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .errors import BrainMetSegError

PathLike = Union[str, "os.PathLike[str]"]

EVENTS_FILE = "events.jsonl"
EVENT_NAMES = ("started", "step", "epoch", "checkpoint", "finished", "failed", "stopped")


def now_iso() -> str:
    """UTC time with milliseconds: events of one second stay ordered for a reader."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _plain(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities (a diverging loss) become null, numpy scalars numbers."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy and torch scalars
        return _plain(value.item())
    raise TypeError(f"event field value {value!r} is not JSON-serialisable")


class EventWriter:
    """Appends events to a file; each line is written whole and flushed before returning.

    The file is opened for each event (append mode) so that a writer holds no handle
    between events, and two writers on one run (a resumed run after a crash) interleave
    whole lines only.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)

    def write(self, event: str, **fields: Any) -> Dict[str, Any]:
        if event not in EVENT_NAMES:
            raise BrainMetSegError(f"event {event!r}: unknown; expected one of {', '.join(EVENT_NAMES)}")
        record = {"event": event, "time": now_iso()}
        record.update(_plain(fields))
        line = json.dumps(record, allow_nan=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
        return record


def _parse_line(line: str, path: Path, number: int) -> Dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise BrainMetSegError(f"{path}: line {number} is not valid JSON ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        raise BrainMetSegError(f"{path}: line {number} is not an event (a JSON object with an 'event' field)")
    return record


def read_events(path: PathLike) -> List[Dict[str, Any]]:
    """Every complete event of the file, in order; a partial last line is left out."""
    follower = EventFollower(path)
    return follower.read_new()


class EventFollower:
    """Reads the events appended since the last call (to follow a running job by polling).

    Only lines ending in a newline are consumed; a partial last line stays for the next
    call, by which time the writer has usually finished it.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.offset = 0
        self.lines = 0

    def read_new(self) -> List[Dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise BrainMetSegError(f"{self.path}: cannot read the events ({error})") from None
        complete = data[: data.rfind(b"\n") + 1]
        events = []
        for raw in complete.splitlines():
            self.lines += 1
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                events.append(_parse_line(text, self.path, self.lines))
        self.offset += len(complete)
        return events


def last_event(path: PathLike, name: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The last complete event (of type `name` when given), or None."""
    matching = [event for event in read_events(path) if name is None or event["event"] == name]
    return matching[-1] if matching else None
