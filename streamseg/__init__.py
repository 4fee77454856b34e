"""streamseg: instance segmentation, tracking and counting for video files and live streams.

    import streamseg
    for result in streamseg.segment("clip.mp4", out="runs/clip"):
        print(result.frame.index, result.frame.time, len(result.instances))
    for result in streamseg.segment_many(["a.mp4", "recordings/"], out="runs/night"):
        print(result.name, result.status, result.frames)
"""

__version__ = "0.1.0"

# Loaded on first use, so that tools needing only a light part (the synthetic world, the formats)
# do not pay for importing torch.
_EXPORTS = {
    "SegmentConfig": "config",
    "InputError": "errors",
    "ModelError": "errors",
    "OutputError": "errors",
    "PipelineError": "errors",
    "StreamsegError": "errors",
    "Frame": "instances",
    "FrameSource": "sources",
    "open_source": "sources",
    "Step": "steps",
    "Instances": "instances",
    "FrameResult": "pipeline",
    "Segmenter": "pipeline",
    "segment": "pipeline",
    "SourceResult": "many",
    "segment_many": "many",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'streamseg' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


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
    "SourceResult",
    "StreamsegError",
    "segment",
    "segment_many",
]
