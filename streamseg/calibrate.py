"""A model's mask threshold, calibrated on held-out synthetic clips and written into a copy of its checkpoint.

The mask head gives each cell of a 28x28 grid a probability; pasted into the box and read at 0.5, the
shipped model's masks once came out a little larger than the truth (mean mask AP 0.656 at 0.5 and 0.668
at 0.6 on three held-out clips), most of it torchvision's paste rule, since replaced (streamseg.ops).
What remains is the model's own: the threshold that scores best is a property of the model, so it
travels in the checkpoint's ``meta`` (``mask_threshold``), where :class:`~streamseg.engine.Predictor`
finds it when no threshold is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .evaluate import evaluate_detections
from .models.checkpoint import load_checkpoint, save_checkpoint
from .pipeline import segment
from .synth import write_clip

THRESHOLDS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
# Seeds no training run and no model-card clip uses (docs/models.md lists those).
HELD_OUT_SEEDS = (3001, 3002, 3003)


@dataclass
class Calibration:
    mask_threshold: float  # the best of those tried
    mask_ap: dict[float, float]  # mean mask AP over the clips, for each threshold tried
    seeds: tuple[int, ...]
    frames: int

    def to_meta(self) -> dict:
        return {"mask_threshold": self.mask_threshold,
                "mask_threshold_calibration": {"seeds": list(self.seeds), "frames": self.frames,
                                               "mask_ap": {str(t): round(ap, 4) for t, ap in self.mask_ap.items()}}}


def best_threshold(mask_ap: dict[float, float]) -> float:
    """The threshold of the highest AP; of equals, the one nearest 0.5 (the uncalibrated default)."""
    return max(mask_ap, key=lambda t: (mask_ap[t], -abs(t - 0.5)))


def calibrate_mask_threshold(model: str, work: str | Path, seeds: Sequence[int] = HELD_OUT_SEEDS,
                             thresholds: Sequence[float] = THRESHOLDS, frames: int = 300, objects: int = 7,
                             device: str = "cpu") -> Calibration:
    """Segment a synthetic clip per seed (written under ``work``) at each threshold; mean mask AP of each."""
    if not seeds or not thresholds or frames < 1:
        raise InputError("calibration needs at least one seed, one threshold and one frame")
    work = Path(work)
    scores: dict[float, list[float]] = {t: [] for t in thresholds}
    for seed in seeds:
        clip = work / f"clip{seed}.mp4"
        gt = write_clip(clip, frames, seed=seed, objects=objects)
        for threshold in thresholds:
            out = work / f"clip{seed}-{threshold}"
            for _ in segment(clip, out, overwrite=True, model=model, mask_threshold=threshold, video=False,
                             device=device):
                pass
            scores[threshold].append(evaluate_detections(out / "frames.jsonl", gt)["mask_ap"] or 0.0)
    mean = {t: sum(aps) / len(aps) for t, aps in scores.items()}
    return Calibration(best_threshold(mean), mean, tuple(seeds), frames)


def check_new_path(out: str | Path) -> Path:
    """``out`` as a Path, if nothing is there: a calibrated copy never replaces a file."""
    out = Path(out)
    if out.exists():
        raise InputError(f"{out} exists; give a new path for the calibrated model")
    return out


def write_calibrated(model: str | Path, out: str | Path, calibration: Calibration) -> Path:
    """A copy of the checkpoint ``model`` at ``out`` (which must not exist) with the calibration in its meta."""
    out = check_new_path(out)
    ckpt = load_checkpoint(model)
    save_checkpoint(out, ckpt["state_dict"], ckpt["architecture"], ckpt["config"], ckpt["class_names"],
                    {**ckpt["meta"], **calibration.to_meta()})
    return out
