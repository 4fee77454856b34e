"""Model names to ready-to-run models: the shipped default, torchvision's COCO models, checkpoints.

``load_model("shapes")`` gives the compact model shipped inside this package (package data);
``load_model("maskrcnn_resnet50_fpn")`` torchvision's COCO model with weights from its cache;
``load_model("path/to/model.pt")`` any streamseg checkpoint. ``weights`` overrides the weights:
a local file, or ``"random"`` for an untrained model of the same compute (benchmarks, tests).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
import torchvision
from torchvision.models.detection import MaskRCNN

from ..errors import ModelError
from .checkpoint import load_checkpoint, read_tensors_file
from .compact import DEFAULT_CONFIG, build_compact

DEFAULT_MODEL = "shapes"
# Package data, so that it travels with every install, not only a checkout.
SHIPPED = {"shapes": resources.files(__package__) / "shapes-maskrcnn.pt"}
TORCHVISION = {
    "maskrcnn_resnet50_fpn": "MaskRCNN_ResNet50_FPN_Weights",
    "maskrcnn_resnet50_fpn_v2": "MaskRCNN_ResNet50_FPN_V2_Weights",
}
ARCHITECTURES = ("compact", *TORCHVISION)
RANDOM_WEIGHTS = "random"


@dataclass
class LoadedModel:
    """A model ready for inference, with what the rest of streamseg needs to know about it."""

    name: str
    architecture: str
    module: MaskRCNN
    class_names: tuple[str, ...]
    device: torch.device
    config: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def default_input_size(self) -> int:
        return int(self.config.get("min_size", 800))

    @property
    def default_mask_threshold(self) -> float:
        """The mask probability that counts as inside, as calibrated for this model (``streamseg.calibrate``
        writes it into a checkpoint's meta), else 0.5."""
        return float(self.meta.get("mask_threshold", 0.5))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "classes": [c for c in self.class_names[1:] if c != "N/A"],
            "device": str(self.device),
        }


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device '{device}' asked for, but CUDA is not available on this machine")
    return resolved


def build_architecture(architecture: str, num_classes: int, config: dict | None = None) -> MaskRCNN:
    """An untrained model of a known architecture."""
    if architecture == "compact":
        return build_compact(num_classes, config)
    if architecture in TORCHVISION:
        builder = getattr(torchvision.models.detection, architecture)
        return builder(weights=None, weights_backbone=None, num_classes=num_classes)
    raise ModelError(f"unknown architecture '{architecture}' (known: {', '.join(ARCHITECTURES)})")


def _read_state_dict(path: str | Path) -> dict:
    """A state dict from a local file: a streamseg checkpoint or a bare torchvision state dict."""
    payload = read_tensors_file(path, "weights file")
    if isinstance(payload, dict) and "state_dict" in payload:
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ModelError(f"{path}: holds no state dict of tensors")
    return payload


def _coco_weights(architecture: str):
    return torchvision.models.get_weight(f"{TORCHVISION[architecture]}.DEFAULT")


def coco_state_dict(architecture: str) -> dict:
    """torchvision's COCO weights, from its hub cache or downloaded into it."""
    weights = _coco_weights(architecture)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        # torch.hub announces every download attempt on stdout (a progress bar goes to stderr), even one
        # that fails at once offline; the outcome is reported below instead, as one line.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - offline, proxy, corrupt cache: one actionable line
        raise ModelError(
            f"COCO weights for {architecture} are not in the cache ({cached}) and could not be downloaded "
            f"({exc.__class__.__name__}); put the file there, or pass --weights FILE with a local copy"
        ) from None


def _load_into(module: torch.nn.Module, state: dict, source: str) -> None:
    try:
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{source}: weights do not fit the model ({first[:160]})") from None


def load_model(spec: str = DEFAULT_MODEL, weights: str | None = None, device: str = "auto") -> LoadedModel:
    """Build a model by registry name or checkpoint path, load its weights, move it to ``device``, eval mode."""
    target = resolve_device(device)
    if spec in TORCHVISION:
        class_names = tuple(_coco_weights(spec).meta["categories"])
        module = build_architecture(spec, len(class_names))
        if weights != RANDOM_WEIGHTS:
            state = _read_state_dict(weights) if weights else coco_state_dict(spec)
            _load_into(module, state, weights or spec)
        loaded = LoadedModel(spec, spec, module, class_names, target)
    else:
        path = SHIPPED.get(spec, Path(spec))
        if spec not in SHIPPED and path.suffix != ".pt" and not path.exists():
            known = ", ".join([*SHIPPED, *TORCHVISION])
            raise ModelError(f"unknown model '{spec}' (known: {known}, or a path to a .pt checkpoint)")
        ckpt = load_checkpoint(path)
        config = {**DEFAULT_CONFIG, **ckpt["config"]} if ckpt["architecture"] == "compact" else ckpt["config"]
        module = build_architecture(ckpt["architecture"], len(ckpt["class_names"]), config)
        if weights != RANDOM_WEIGHTS:
            _load_into(module, _read_state_dict(weights) if weights else ckpt["state_dict"], weights or str(path))
        loaded = LoadedModel(
            spec if spec in SHIPPED else path.stem,
            ckpt["architecture"],
            module,
            tuple(ckpt["class_names"]),
            target,
            config,
            ckpt.get("meta", {}),
        )
    loaded.module.eval().to(target)
    if loaded.architecture == "compact":
        # Measured on the 2-core CPU: 32-37 ms -> 28-30 ms per 640x360 frame (forward pass).
        loaded.module.backbone.to(memory_format=torch.channels_last)
    return loaded
