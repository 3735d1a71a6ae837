"""The one user-facing error type.

Every refusal (unreadable file, wrong shape, bad parameter) raises BrainMetSegError with a
message that names the file or parameter and the reason, so the CLI and the Slicer panel can
show it as is, without a traceback.
"""
from __future__ import annotations


class BrainMetSegError(Exception):
    """Bad input or a refused operation; the message is meant for the user."""
