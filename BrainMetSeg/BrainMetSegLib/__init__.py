"""BrainMetSeg library: everything that is not GUI (no qt/ctk imports anywhere here)."""

__version__ = "0.1.0"
