"""Models: the compact architecture, the checkpoint format and the registry of names."""

from .checkpoint import load_checkpoint, save_checkpoint
from .compact import build_compact
from .registry import DEFAULT_MODEL, LoadedModel, build_architecture, load_model, resolve_device

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "build_architecture",
    "build_compact",
    "load_checkpoint",
    "load_model",
    "resolve_device",
    "save_checkpoint",
]
