"""Training: the synthetic world or a COCO-format folder into a streamseg checkpoint.

The schedule is a cosine over the run's *progress*, the larger of iterations done / ``iterations``
and time spent / ``minutes``, so a run bounded by minutes decays its learning rate properly too.
``model.pt`` holds an exponential moving average of the weights (and of BatchNorm's statistics), or the
last step's weights with ``ema=0``; ``checkpoint.pt`` holds both. (With the cosine down to 0 the two scored
within 0.005 mask AP of each other on the shipped model's run: docs/models.md.)
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .datasets import CocoDataset, SynthDataset, collate
from .errors import InputError, ModelError
from .models.checkpoint import load_checkpoint, save_checkpoint
from .models.compact import DEFAULT_CONFIG
from .models.registry import TORCHVISION, build_architecture, coco_state_dict, resolve_device

LOSS_GROUPS = {
    "rpn": ("loss_objectness", "loss_rpn_box_reg"),
    "box": ("loss_classifier", "loss_box_reg"),
    "mask": ("loss_mask",),
}


@dataclass
class TrainSettings:
    data: str = "synth"
    model: str = "compact"  # an architecture name, or a checkpoint to fine-tune from
    out: str = "runs/train"
    minutes: float | None = None
    iterations: int | None = None
    batch: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    ema: float = 0.999  # decay of the weights' moving average that model.pt holds; 0 ships the last step's
    seed: int = 0
    device: str = "auto"
    workers: int = 1
    checkpoint_minutes: float = 5.0
    log_every: int = 20  # iterations between lines of OUT/log.jsonl
    # Overrides of the compact model's settings (compact.DEFAULT_CONFIG's keys), for a fresh model or a
    # fine-tuned checkpoint: a fine-tune may change the sizes it trains and infers at, say.
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.minutes is None and self.iterations is None:
            raise InputError("give --minutes or --iterations (or both) to bound the training run")
        if self.batch < 1 or self.lr <= 0:
            raise InputError("--batch must be at least 1 and --lr positive")
        if not 0 <= self.ema < 1:
            raise InputError("--ema must be in [0, 1)")
        unknown = sorted(set(self.config) - set(DEFAULT_CONFIG))
        if unknown:
            raise InputError(f"unknown model setting '{unknown[0]}' (known: {', '.join(DEFAULT_CONFIG)})")


def parse_overrides(items: list[str]) -> dict:
    """``["min_size=312", "train_min_sizes=[264,288]"]`` as a dict; values are JSON (bare words are strings)."""
    config = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set wants KEY=VALUE, got '{item}'")
        try:
            config[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            config[key.strip()] = text
    return config


@dataclass
class TrainStep:
    iteration: int
    progress: float  # 0..1
    lr: float
    losses: dict[str, float]  # rpn, box, mask, total
    elapsed: float
    its_per_second: float


def _batches(loader: DataLoader, infinite: bool) -> Iterator:
    # A map-style dataset (COCO) is cycled epoch after epoch; the synthetic one never ends.
    return itertools.chain.from_iterable(itertools.repeat(loader)) if infinite else iter(loader)


def _initial_model(settings: TrainSettings, class_names: tuple[str, ...]) -> tuple[torch.nn.Module, str, dict]:
    if settings.model == "compact":
        config = {**DEFAULT_CONFIG, **settings.config}
        return build_architecture("compact", len(class_names), config), "compact", config
    if settings.model in TORCHVISION:
        if settings.config:
            raise InputError("--set changes compact models only")
        module = build_architecture(settings.model, len(class_names))
        try:
            coco = coco_state_dict(settings.model)
        except ModelError:
            coco = {}  # no COCO weights here: train from scratch rather than refuse
        own = module.state_dict()
        module.load_state_dict({k: v for k, v in coco.items() if k in own and own[k].shape == v.shape}, strict=False)
        return module, settings.model, {}
    ckpt = load_checkpoint(settings.model)
    if settings.config and ckpt["architecture"] != "compact":
        raise InputError("--set changes compact models only")
    config = {**ckpt["config"], **settings.config}
    module = build_architecture(ckpt["architecture"], len(class_names), config)
    own = module.state_dict()
    # Heads sized for other classes are left fresh; everything else is fine-tuned.
    fitting = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    module.load_state_dict({k: v for k, v in fitting.items() if k in own and own[k].shape == v.shape}, strict=False)
    return module, ckpt["architecture"], config


def train(settings: TrainSettings, resume: bool = False, on_step: Callable[[TrainStep], None] | None = None) -> Path:
    """Train and return the path of the final fp16 model; ``checkpoint.pt`` beside it resumes.

    ``log.jsonl`` beside them gets a line of losses every ``log_every`` iterations, so a run
    without a terminal (or a finished one) can be followed and plotted.
    """
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    saved = load_checkpoint(out / "checkpoint.pt") if resume else None
    if saved:  # the model goes on as it was built, --set included, whatever this call's overrides
        settings = replace(settings, config=saved["config"])
    dataset, loader, infinite = _data(settings)
    session = _Session(settings, dataset.class_names, device, out)
    if saved:
        session.restore(saved)
    start = time.perf_counter()
    last_save, first_iteration = start, session.iteration
    losses: dict[str, float] = {}
    batches = _batches(loader, infinite)
    log = open(out / "log.jsonl", "a" if resume else "w", encoding="utf-8")
    try:
        while (done := session.progress(session.elapsed_before + time.perf_counter() - start)) < 1.0:
            lr = session.learning_rate(done)
            losses = session.step(*next(batches), lr)
            now = time.perf_counter()
            run_seconds = now - start
            step = TrainStep(session.iteration, session.progress(session.elapsed_before + run_seconds), lr, losses,
                             session.elapsed_before + run_seconds,
                             (session.iteration - first_iteration) / max(run_seconds, 1e-9))
            if on_step:
                on_step(step)
            if session.iteration % settings.log_every == 0:
                log.write(json.dumps({**asdict(step), "losses": {k: round(v, 4) for k, v in losses.items()}}) + "\n")
                log.flush()
            if now - last_save > settings.checkpoint_minutes * 60:
                session.save(False, session.elapsed_before + now - start, losses)
                last_save = now
    except KeyboardInterrupt:
        pass  # Ctrl-C: fall through and save what was learned, then let the caller report it
    finally:
        log.close()
    session.save(True, session.elapsed_before + time.perf_counter() - start, losses)
    return out / "model.pt"


def _data(settings: TrainSettings) -> tuple[SynthDataset | CocoDataset, DataLoader, bool]:
    """The dataset, its loader, and whether the loader is to be cycled (a folder is; synth never ends)."""
    if settings.data == "synth":
        dataset = SynthDataset(settings.seed)
        return dataset, DataLoader(dataset, batch_size=settings.batch, collate_fn=collate,
                                   num_workers=settings.workers), False
    dataset = CocoDataset(settings.data)
    loader = DataLoader(dataset, batch_size=settings.batch, shuffle=True, collate_fn=collate,
                        num_workers=settings.workers, generator=torch.Generator().manual_seed(settings.seed))
    return dataset, loader, True


class _Session:
    """The model being trained, its optimizer and how far it has come; saves and restores all three."""

    def __init__(self, settings: TrainSettings, class_names: tuple[str, ...], device: torch.device, out: Path):
        self.settings, self.class_names, self.device, self.out = settings, class_names, device, out
        self.module, self.architecture, self.config = _initial_model(settings, class_names)
        self.module.to(device).train()
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.average = _Average(self.module, settings.ema) if settings.ema else None
        self.iteration, self.elapsed_before = 0, 0.0

    def restore(self, state: dict) -> None:
        self.module.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["train_state"]["optimizer"])
        if self.average and "average" in state["train_state"]:
            # Read onto the CPU (load_checkpoint); the average is updated beside the module, on its device.
            self.average.state = {k: v.to(self.device) for k, v in state["train_state"]["average"].items()}
        self.iteration = int(state["train_state"]["iteration"])
        self.elapsed_before = float(state["train_state"]["elapsed"])

    def progress(self, elapsed: float) -> float:
        """0 to 1: the larger of iterations done and minutes spent, as fractions of what was asked."""
        parts = []
        if self.settings.iterations:
            parts.append(self.iteration / self.settings.iterations)
        if self.settings.minutes:
            parts.append(elapsed / (self.settings.minutes * 60))
        return min(1.0, max(parts))

    def learning_rate(self, done: float) -> float:
        """Linear warm-up, then a cosine down to 0 at the end."""
        settings = self.settings
        warm = min(1.0, (self.iteration + 1) / settings.warmup) if settings.warmup else 1.0
        return settings.lr * warm * 0.5 * (1 + math.cos(math.pi * done))

    def step(self, images: list[torch.Tensor], targets: list[dict], lr: float) -> dict[str, float]:
        """One optimizer step at ``lr``; the losses, grouped."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = [i.to(self.device, non_blocking=True) for i in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        loss_dict = self.module(images, targets)
        total = sum(loss_dict.values())
        if not torch.isfinite(total):
            raise ModelError(f"training diverged at iteration {self.iteration} (loss {float(total)}); lower --lr")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), 10.0)
        self.optimizer.step()
        self.iteration += 1
        if self.average:
            self.average.update(self.module, self.iteration)
        losses = {g: sum(loss_dict[k].item() for k in keys if k in loss_dict) for g, keys in LOSS_GROUPS.items()}
        losses["total"] = total.item()
        return losses

    def save(self, final: bool, elapsed: float, last_losses: dict) -> None:
        settings = self.settings
        meta = {"settings": asdict(settings), "iterations": self.iteration, "train_seconds": round(elapsed, 1),
                "final_losses": last_losses}
        train_state = {"optimizer": self.optimizer.state_dict(), "iteration": self.iteration, "elapsed": elapsed}
        if self.average:
            train_state["average"] = self.average.state
        save_checkpoint(self.out / "checkpoint.pt", self.module, self.architecture, self.config, self.class_names,
                        meta, train_state)
        if final:
            shipped = self.average.state if self.average else self.module.state_dict()
            save_checkpoint(self.out / "model.pt", shipped, self.architecture, self.config, self.class_names,
                            meta, half=True)


class _Average:
    """An exponential moving average of a module's state (weights and BatchNorm statistics).

    The decay ramps up from 0.1 over the first iterations, so that a short run's average is not
    dominated by its starting weights.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, iteration: int) -> None:
        decay = min(self.decay, (1 + iteration) / (10 + iteration))
        for key, value in module.state_dict().items():
            if value.is_floating_point():
                self.state[key].lerp_(value, 1 - decay)
            else:
                self.state[key].copy_(value)  # counters such as BatchNorm's num_batches_tracked
