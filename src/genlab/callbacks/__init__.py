"""Lightning callbacks: sample grids, text samples, run information in loggers and checkpoints,
a progress bar that redraws a few times a second."""

from genlab.callbacks.progress import ProgressBar
from genlab.callbacks.run_info import RunInfo
from genlab.callbacks.sample_quality import SampleQuality
from genlab.callbacks.samples import ImageSamples
from genlab.callbacks.text_samples import TextSamples

__all__ = ["ImageSamples", "ProgressBar", "RunInfo", "SampleQuality", "TextSamples"]
