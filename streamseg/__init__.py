"""streamseg: instance segmentation, tracking and counting for video files and live streams.

    import streamseg
    for result in streamseg.segment("clip.mp4", out="runs/clip"):
        print(result.frame.index, result.frame.time, len(result.instances))
"""

__version__ = "0.1.0"

from .config import SegmentConfig  # noqa: E402
from .errors import InputError, ModelError, OutputError, PipelineError, StreamsegError  # noqa: E402
from .instances import Frame, Instances  # noqa: E402
from .pipeline import FrameResult, Segmenter, segment  # noqa: E402

__all__ = [
    "Frame",
    "FrameResult",
    "InputError",
    "Instances",
    "ModelError",
    "OutputError",
    "PipelineError",
    "SegmentConfig",
    "Segmenter",
    "StreamsegError",
    "segment",
]
