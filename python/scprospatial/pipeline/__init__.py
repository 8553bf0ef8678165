"""The single-machine runner (`scprospatial run`, `scprospatial demo`)."""
from .runner import LAYOUT, build_steps, run_demo, run_samplesheet
from .samplesheet import Sample, read_samplesheet

__all__ = ["LAYOUT", "Sample", "build_steps", "read_samplesheet", "run_demo", "run_samplesheet"]
