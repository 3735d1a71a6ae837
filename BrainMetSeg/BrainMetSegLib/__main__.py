"""`python -m BrainMetSegLib` runs the CLI (used to launch jobs with Slicer's own Python)."""
import sys

from .cli import main

sys.exit(main())
