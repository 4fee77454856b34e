"""The shapes of the synthetic world and how they are painted: circles, rectangles and triangles, each a
colour or a texture, over textured backgrounds, with the *visible* part of each as its ground truth.

:mod:`streamseg.synth` moves them (:class:`~streamseg.synth.World`); :func:`random_scene` paints
independent still scenes for training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from .geometry import SUBPIXEL, SUBPIXEL_BITS, subpixel
from .instances import Instances

CLASS_NAMES = ("__background__", "circle", "rectangle", "triangle")
MIN_SIZE, MAX_SIZE = 12, 140
# Slivers smaller than this after occlusion are not ground truth: no one could segment them. They are kept apart
# (Scene.faint) so that an evaluation can ignore a detection of one instead of calling it a false one.
MIN_VISIBLE_AREA = 30


@dataclass
class Shape:
    """One object: geometry, look, motion and stable identity."""

    track_id: int
    class_id: int
    size: float  # circle diameter, long side of a rectangle, circumscribed diameter of a triangle
    aspect: float  # rectangle short/long side; triangle vertex jitter seed
    x: float
    y: float
    angle: float  # degrees
    vx: float
    vy: float
    spin: float  # degrees per frame
    colors: np.ndarray  # (2, 3) uint8: primary and secondary
    texture: str
    texture_scale: float
    texture_seed: int  # the pattern's own randomness, fixed so it does not flicker between frames
    triangle: np.ndarray  # (3, 2) unit-circle vertices, fixed per object

    def polygon(self) -> np.ndarray:
        """Outline in pixels ((K, 2) float); circles are drawn separately."""
        rad = math.radians(self.angle)
        rot = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
        if self.class_id == 2:
            half = np.array([self.size, self.size * self.aspect]) / 2
            corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        else:
            corners = self.triangle * (self.size / 2)
        return corners @ rot.T + np.array([self.x, self.y])

    def mask(self, height: int, width: int) -> np.ndarray:
        canvas = np.zeros((height, width), np.uint8)
        if self.class_id == 1:
            # Draw with subpixel precision so slow objects move smoothly.
            cv2.circle(canvas, (round(self.x * SUBPIXEL), round(self.y * SUBPIXEL)), round(self.size * SUBPIXEL / 2), 1, -1, cv2.LINE_8,
                       SUBPIXEL_BITS)
        else:
            cv2.fillPoly(canvas, [subpixel(self.polygon())], 1, cv2.LINE_8, SUBPIXEL_BITS)
        return canvas.astype(bool)

    def step(self) -> None:
        self.x += self.vx
        self.y += self.vy
        self.angle = (self.angle + self.spin) % 360.0

    def gone(self, height: int, width: int) -> bool:
        """Wholly beyond an edge and moving further out. A shape that enters starts beyond an edge too,
        but heading in: it must be given the frames to arrive, not be replaced at once."""
        r = self.size / 2
        return (
            (self.x + r < 0 and self.vx <= 0)
            or (self.y + r < 0 and self.vy <= 0)
            or (self.x - r > width and self.vx >= 0)
            or (self.y - r > height and self.vy >= 0)
        )


def _random_triangle(rng: np.random.Generator) -> np.ndarray:
    """Three points on the unit circle, spread enough that no angle is a needle."""
    while True:
        angles = np.sort(rng.uniform(0, 2 * np.pi, 3))
        gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
        if gaps.min() > 0.6:  # every vertex angle above ~17 degrees
            return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _random_colors(rng: np.random.Generator) -> np.ndarray:
    primary = rng.integers(0, 256, 3)
    secondary = np.clip(primary + rng.integers(-90, 91, 3), 0, 255)
    return np.stack([primary, secondary]).astype(np.uint8)


def random_shape(rng: np.random.Generator, track_id: int, x: float, y: float, speed: float) -> Shape:
    # Log-uniform sizes: as many small objects as large ones.
    size = float(np.exp(rng.uniform(np.log(MIN_SIZE), np.log(MAX_SIZE))))
    heading = rng.uniform(0, 2 * np.pi)
    return Shape(
        track_id=track_id,
        class_id=int(rng.integers(1, 4)),
        size=size,
        aspect=float(rng.uniform(0.35, 1.0)),
        x=x,
        y=y,
        angle=float(rng.uniform(0, 360)),
        vx=float(speed * np.cos(heading)),
        vy=float(speed * np.sin(heading)),
        spin=float(rng.uniform(-2.5, 2.5)),
        colors=_random_colors(rng),
        texture=str(rng.choice(["solid", "solid", "stripes", "checker", "noise", "gradient"])),
        texture_scale=float(rng.uniform(3, 14)),
        texture_seed=int(rng.integers(2**31)),
        triangle=_random_triangle(rng),
    )


def _texture(rng: np.random.Generator, height: int, width: int, kind: str, colors: np.ndarray, scale: float) -> np.ndarray:
    """An (H, W, 3) uint8 fill pattern of two colours."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "solid":
        weight = np.zeros((height, width), np.float32)
    elif kind == "stripes":
        theta = rng.uniform(0, np.pi)
        weight = (np.sin((xx * np.cos(theta) + yy * np.sin(theta)) / scale * np.pi) > 0).astype(np.float32)
    elif kind == "checker":
        weight = ((np.floor(xx / (2 * scale)) + np.floor(yy / (2 * scale))) % 2).astype(np.float32)
    elif kind == "noise":
        small = rng.random((max(2, int(height / scale) + 2), max(2, int(width / scale) + 2))).astype(np.float32)
        weight = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    else:  # gradient
        theta = rng.uniform(0, 2 * np.pi)
        ramp = xx * np.cos(theta) + yy * np.sin(theta)
        weight = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    a, b = colors.astype(np.float32)
    return (a * (1 - weight[..., None]) + b * weight[..., None]).astype(np.uint8)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured backdrop: smooth colour noise, sometimes with a faint pattern on top."""
    cells = int(rng.integers(2, 12))
    small = rng.integers(0, 256, (cells, max(2, cells * width // height), 3)).astype(np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, rng.uniform(2, 12), (height, width, 1)).astype(np.float32)
    # Pull the colours towards a random grey by a random amount: from vivid to nearly drab.
    saturation, grey = rng.uniform(0.25, 1.0), rng.uniform(40, 215)
    image = np.clip(image.astype(np.float32) * saturation + grey * (1 - saturation) + fine, 0, 255)
    if rng.random() < 0.5:
        pattern = _texture(rng, height, width, str(rng.choice(["stripes", "checker"])), _random_colors(rng), float(rng.uniform(6, 40)))
        alpha = rng.uniform(0.1, 0.35)
        image = image * (1 - alpha) + pattern.astype(np.float32) * alpha
    return image.astype(np.uint8)


@dataclass
class Scene:
    """A painted frame: the picture, its ground truth (each visible part of at least MIN_VISIBLE_AREA
    pixels, front first) and the ``faint`` parts under that floor, which are in the picture but in no
    ground truth (COCO would call them crowd regions: a detection there is neither right nor wrong)."""

    image: np.ndarray
    truth: Instances
    faint: Instances


def paint(backdrop: np.ndarray, shapes: list[Shape], frame_index: int = 0, time: float = 0.0) -> Scene:
    """Paint ``shapes`` back to front over ``backdrop``; the truth is each visible part, front first."""
    height, width = backdrop.shape[:2]
    image = backdrop.copy()
    masks = [s.mask(height, width) for s in shapes]
    for shape, mask in zip(shapes, masks):
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        pattern_rng = np.random.default_rng(shape.texture_seed)
        fill = _texture(pattern_rng, y1 - y0, x1 - x0, shape.texture, shape.colors, shape.texture_scale)
        image[y0:y1, x0:x1][mask[y0:y1, x0:x1]] = fill[mask[y0:y1, x0:x1]]
    visible, faint, covered = [], [], np.zeros((height, width), bool)
    for shape, mask in zip(reversed(shapes), reversed(masks)):
        part = mask & ~covered
        covered |= mask
        area = part.sum()
        if area:
            (visible if area >= MIN_VISIBLE_AREA else faint).append((shape, part))
    return Scene(image, _parts(visible, frame_index, time, height, width), _parts(faint, frame_index, time, height, width))


def _parts(parts: list[tuple[Shape, np.ndarray]], frame_index: int, time: float, height: int, width: int) -> Instances:
    """Instances of the shapes' visible ``parts`` (full-frame masks), boxes tight around them."""
    boxes = []
    for _, part in parts:
        ys, xs = np.nonzero(part)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return Instances.from_masks(
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        scores=np.ones(len(parts), np.float32),
        class_ids=np.array([s.class_id for s, _ in parts], np.int64),
        masks=np.stack([p for _, p in parts]) if parts else np.zeros((0, height, width), bool),
        frame_index=frame_index,
        time=time,
        track_ids=np.array([s.track_id for s, _ in parts], np.int64),
    )


def degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera-and-codec look for training: slight blur, sensor noise, then JPEG blocking or, as in the
    clips streamseg is evaluated on and most video it sees, an H.264 picture (4:2:0 chroma, x264's
    blocking and ringing)."""
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (3, 3), rng.uniform(0.3, 1.0))
    if rng.random() < 0.5:
        noise = rng.normal(0, rng.uniform(1, 6), image.shape)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    codec = rng.random()
    if codec < 0.35:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 95))])
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    elif codec < 0.8 and image.shape[0] % 2 == image.shape[1] % 2 == 0:  # 4:2:0 wants even sides
        image = h264_picture(image, int(rng.integers(18, 33)))
    return image


def h264_picture(image: np.ndarray, crf: int) -> np.ndarray:
    """``image`` (RGB uint8, even sides) after one trip through x264 at ``crf`` and back."""
    height, width = image.shape[:2]
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
    packets = encoder.encode(av.VideoFrame.from_ndarray(image, format="rgb24")) + encoder.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    pictures = [picture for packet in [*packets, None] for picture in decoder.decode(packet)]
    return pictures[0].to_ndarray(format="rgb24")


def random_scene(rng: np.random.Generator, height: int = 360, width: int = 640, max_objects: int = 12) -> tuple[np.ndarray, Instances]:
    """One independent still for training: a fresh backdrop and 1..max_objects overlapping shapes."""
    count = int(rng.integers(1, max_objects + 1))
    margin = MAX_SIZE / 4
    shapes = [
        random_shape(rng, i, float(rng.uniform(-margin, width + margin)), float(rng.uniform(-margin, height + margin)), 0.0)
        for i in range(count)
    ]
    scene = paint(background(rng, height, width), shapes)
    return degrade(rng, scene.image), scene.truth
