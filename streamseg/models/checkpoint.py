"""streamseg's checkpoint format: one ``.pt`` file that rebuilds a model on its own.

A checkpoint is a plain dict (so ``torch.load(weights_only=True)`` reads it and nothing executable
can ride along)::

    {"format": "streamseg-checkpoint", "version": 1, "architecture": "compact",
     "config": {...architecture keys...}, "class_names": ["__background__", ...],
     "state_dict": {...}, "meta": {...training settings, metrics...},
     "train_state": {...optimizer, iteration, elapsed...}}   # only in resumable training checkpoints
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ModelError

FORMAT = "streamseg-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("architecture", "config", "class_names", "state_dict")


def save_checkpoint(
    path: str | Path,
    module: torch.nn.Module | dict[str, torch.Tensor],
    architecture: str,
    config: dict,
    class_names: list[str] | tuple[str, ...],
    meta: dict | None = None,
    train_state: dict | None = None,
    half: bool = False,
) -> None:
    """Write ``module`` (or a state dict) atomically: a temp file, then a rename, so that an interrupted
    save never leaves a broken file."""
    state = module if isinstance(module, dict) else module.state_dict()
    state = {k: v.detach().cpu() for k, v in state.items()}
    if half:  # shipping size: floats to fp16, integer buffers (BN counters) untouched
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": architecture,
        "config": dict(config),
        "class_names": list(class_names),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_tensors_file(path: str | Path, kind: str) -> object:
    """What ``torch.load(weights_only=True)`` finds in ``path``; a missing or unreadable file is a
    :class:`ModelError` naming ``kind`` ("streamseg checkpoint", "weights file")."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such {kind}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load fails in many ways (even KeyError) on foreign bytes
        # weights_only refuses pickled code: a file that needs it is not ours and is not trusted.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"{path}: not a loadable {kind} ({reason[:160]})") from None


def load_checkpoint(path: str | Path) -> dict:
    """Read and validate a streamseg checkpoint; anything else is a :class:`ModelError`."""
    path = Path(path)
    payload = read_tensors_file(path, "streamseg checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a streamseg checkpoint (no '{FORMAT}' format tag)")
    if payload.get("version", 0) > VERSION:
        raise ModelError(f"{path}: checkpoint version {payload['version']} is newer than this streamseg ({VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ModelError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return payload
