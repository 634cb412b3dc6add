"""Lightning callbacks: sample grids, run information in loggers and checkpoints."""

from genlab.callbacks.run_info import RunInfo
from genlab.callbacks.sample_quality import SampleQuality
from genlab.callbacks.samples import ImageSamples

__all__ = ["ImageSamples", "RunInfo", "SampleQuality"]
