"""Damaged copies of small clips, made with a fixed seed, through ``streamseg segment``.

Bytes flipped, blocks zeroed, files cut short, halves of two files spliced, header bytes and
metadata tags overwritten: every variant must end with exit 0 (the frames that decode are
segmented) or exit 2 (one line saying why), never an "unexpected" error, a traceback or a hang, and
whatever JSONL it wrote must be valid.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import av
import pytest

from streamseg.synth import World, write_clip

SEED = 56
FRAMES, WIDTH, HEIGHT = 30, 160, 96
# Runs every variant through the command line in one process (one import of torch instead of one per
# variant); prints a JSON line per variant as it finishes, so a hang shows which one.
RUNNER = """
import json, sys
from typer.testing import CliRunner
from streamseg.cli import app

model, out_root, *variants = sys.argv[1:]
for index, variant in enumerate(variants):
    out = f"{out_root}/{index}"
    result = CliRunner().invoke(app, ["segment", variant, "--model", model, "--out", out, "--quiet",
                                      "--score-threshold", "0.05", "--max-frames", "10"])
    print(json.dumps({"variant": variant, "out": out, "exit_code": result.exit_code, "stderr": result.stderr,
                      "exception": repr(result.exception)}), flush=True)
"""


def write_plain(path: Path, format: str, codec: str) -> Path:
    """A clip as FFmpeg writes one: its header (AVI) or index (MP4, at the end) names the encoder, "Lavf…"."""
    with av.open(str(path), "w", format=format) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index, (image, _) in zip(range(FRAMES), World(WIDTH, HEIGHT, seed=SEED)):
            picture = av.VideoFrame.from_ndarray(image, format="rgb24")
            picture.pts = index
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return path


def flip_bytes(data: bytes, other: bytes, rng: random.Random) -> bytes:
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 40)):
        damaged[rng.randrange(len(data))] ^= rng.randint(1, 255)
    return bytes(damaged)


def zero_block(data: bytes, other: bytes, rng: random.Random) -> bytes:
    start, size = rng.randrange(len(data)), rng.randint(256, 4096)
    return data[:start] + bytes(len(data[start:start + size])) + data[start + size:]


def cut(data: bytes, other: bytes, rng: random.Random) -> bytes:
    return data[:rng.randint(len(data) // 20, len(data) * 19 // 20)]


def splice(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """The front of one file and the back of another, each cut anywhere."""
    return data[:rng.randint(len(data) // 4, len(data) * 3 // 4)] + other[rng.randint(0, len(other) // 2):]


def damage_header(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """A few bytes changed in the stream headers: AVI's header list or MP4's index."""
    damaged = bytearray(data)
    header = data.find(b"hdrl") if b"hdrl" in data else data.index(b"moov")
    for _ in range(rng.randint(1, 8)):
        damaged[min(header + rng.randrange(512), len(data) - 1)] = rng.randrange(256)
    return bytes(damaged)


def damage_tag(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """The encoder's name tag made invalid UTF-8, as in the damaged vtest.avi that failed."""
    damaged = bytearray(data)
    at = data.index(b"Lavf") + rng.randrange(4)
    damaged[at:at + 2] = bytes([0xD0, rng.choice([0x28, 0xFF, 0x00])])
    return bytes(damaged)


# How each clip is damaged, and in how many variants: 3 clips x 13 = 39.
DAMAGE = [(flip_bytes, 3), (zero_block, 2), (cut, 2), (splice, 2), (damage_header, 3), (damage_tag, 1)]


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("damaged")
    write_clip(folder / "fragmented.mp4", frames=FRAMES, width=WIDTH, height=HEIGHT, seed=SEED, objects=3)
    clips = [write_plain(folder / "plain.avi", "avi", "mpeg4"), write_plain(folder / "plain.mp4", "mp4", "libx264"),
             folder / "fragmented.mp4"]  # the last as our overlay.mp4 is written
    rng = random.Random(SEED)
    made = []
    for clip in clips:
        data = clip.read_bytes()
        for damage, count in DAMAGE:
            for number in range(count):
                other = rng.choice([c for c in clips if c != clip]).read_bytes()
                variant = folder / f"{clip.stem}-{damage.__name__}-{number}{clip.suffix}"
                variant.write_bytes(damage(data, other, rng))
                made.append(variant)
    return made


def test_every_damaged_variant_ends_cleanly(tmp_path, variants, tiny_checkpoint):
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tiny_checkpoint), str(tmp_path), *map(str, variants)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        stdout, stderr = runner.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        runner.kill()
        stdout, stderr = runner.communicate()
    runs = [json.loads(line) for line in stdout.splitlines()]
    assert len(runs) == len(variants), f"stopped at {variants[len(runs)].name}: {stderr[-2000:]}"
    assert stderr == ""  # nothing from FFmpeg or Python beyond what each run says itself
    for run in runs:
        name, lines, jsonl = Path(run["variant"]).name, run["stderr"].splitlines(), Path(run["out"]) / "frames.jsonl"
        assert run["exit_code"] in (0, 2), (name, run)
        assert "Traceback" not in run["stderr"] and "unexpected" not in run["stderr"], (name, run)
        if run["exit_code"] == 2:
            assert len(lines) == 1 and lines[0].startswith("streamseg: error: "), (name, run)
            assert not Path(run["out"]).exists(), name  # a source that cannot be read leaves no run behind
        else:
            records = [json.loads(line) for line in jsonl.read_text().splitlines()]
            assert records and all(isinstance(record, dict) for record in records), name
    # A bad tag spoils no frame: those runs must segment every frame asked for.
    tagged = [run for run in runs if "damage_tag" in run["variant"]]
    assert [run["exit_code"] for run in tagged] == [0] * len(tagged), tagged
    assert all(len((Path(run["out"]) / "frames.jsonl").read_text().splitlines()) == 10 for run in tagged)
