"""Several sources in one call: source lists, safe names, index.json, the local and Ray backends, the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import streamseg
from streamseg.cli import app
from streamseg.config import build_config
from streamseg.engine import Predictor
from streamseg.errors import InputError, OutputError
from streamseg.many import expand_sources, is_collection, plan_jobs, segment_many, unique_names
from streamseg.pipeline import Segmenter
from streamseg.synth import write_clip
from tests.loopback import free_port, start_server

LOW = {"score_threshold": 0.05}  # the tiny test model is untrained: low scores are all it has
SAFE = re.compile(r"[A-Za-z0-9_-]+")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Three tiny clips of different lengths in one folder (with the synth's GT files beside them)."""
    folder = tmp_path_factory.mktemp("many-clips")
    paths = []
    for seed, frames in enumerate((20, 14, 24)):
        paths.append(folder / f"clip{seed}.mp4")
        write_clip(paths[-1], frames=frames, width=160, height=90, seed=seed, objects=3)
    return paths


@pytest.fixture(scope="module")
def alone(clips, tiny_checkpoint, tmp_path_factory) -> dict[str, bytes]:
    """Each clip's frames.jsonl when segmented alone, through the public API."""
    out = tmp_path_factory.mktemp("alone")
    segmenter = Segmenter(build_config(model=str(tiny_checkpoint), video=False, **LOW))
    outputs = {}
    for clip in clips:
        with segmenter.run(clip, out / clip.stem) as run:
            for _ in run:
                pass
        outputs[clip.stem] = (out / clip.stem / "frames.jsonl").read_bytes()
    return outputs


# Which sources the arguments stand for.

def test_folder_glob_list_and_mixed_arguments(clips, tmp_path):
    folder = clips[0].parent
    videos = [str(c) for c in clips]
    assert expand_sources([str(folder)]) == videos  # its videos only: the .gt.jsonl files stay out
    assert expand_sources([str(folder / "clip[02].mp4")]) == [videos[0], videos[2]]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# cameras and files\n\n{videos[1]}\n  rtsp://cam/1  \n{folder}/*.mp4\n")
    mixed = expand_sources([videos[2], f"@{listing}", "cam:0"])
    assert mixed == [videos[2], videos[1], "rtsp://cam/1", videos[0], "cam:0"]  # in order, each once
    (tmp_path / "here.mp4").write_bytes(b"")
    (tmp_path / "rel.txt").write_text("here.mp4\n")
    assert expand_sources([f"@{tmp_path / 'rel.txt'}"]) == [str(tmp_path / "here.mp4")]  # relative to the list
    assert [is_collection(a) for a in (str(folder), "x/*.mp4", "@l.txt", videos[0], "rtsp://h/*")] == [
        True, True, True, False, False]


@pytest.mark.parametrize("arguments, message", [
    (["{empty}"], "holds no videos"),
    (["{empty}/*.mp4"], "matches no files"),
    (["@{empty}/none.txt"], "cannot read the list"),
    (["@{empty}/blank.txt"], "lists no sources"),
    (["@{empty}/nested.txt"], "cannot name another list"),
    (["a.mp4", "-"], "standard input"),
])
def test_arguments_that_name_no_source_are_refused(tmp_path, arguments, message):
    (tmp_path / "blank.txt").write_text("# nothing\n\n")
    (tmp_path / "nested.txt").write_text("@other.txt\n")
    with pytest.raises(InputError, match=message):
        expand_sources([a.format(empty=tmp_path) for a in arguments])


def test_names_are_safe_unique_and_free_of_credentials(tmp_path):
    specs = ["rtsp://u:p@h/../../x", "rtsp://user:secret@10.0.0.1:8554/live/cam1?token=abc", "a/clip.mp4",
             "b/clip.mp4", "c/CLIP.mkv", "..", "...mp4", ".hidden.mp4", "dir/../../etc/passwd", "東京.mp4",
             "café.mp4", "a\\b\\win.mp4", "index.json", "cam:0", "/dev/video0", "http://h/..", "x/.."]
    names = unique_names(specs)
    assert len({n.lower() for n in names}) == len(names)
    for name in names:
        assert SAFE.fullmatch(name) and not name.startswith(("-", "_"))
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
        assert "secret" not in name and "user" not in name and "token" not in name
    assert names[:6] == ["h-x", "10_0_0_1-8554-cam1", "clip", "clip-2", "CLIP-3", names[5]]
    assert names[5].startswith("source-") and names[9].startswith("source-") and names[9] != names[5]
    assert names[10] == "cafe" and names[11] == "win" and names[12] == "index_" and names[13:15] == ["cam0", "video0"]
    assert unique_names(specs) == names  # the same list, the same names: what --resume relies on


# The local backend.

def test_local_backend_outputs_match_each_source_alone(clips, alone, tiny_checkpoint, tmp_path):
    seen = []
    results = list(segment_many([str(clips[0].parent)], out=tmp_path, model=str(tiny_checkpoint), video=False,
                                max_concurrent=3, on_progress=seen.append, **LOW))
    assert sorted(r.name for r in results) == sorted(alone)
    for result in results:
        assert result.status == "complete" and result.error is None and result.out == tmp_path / result.name
        assert (result.out / "frames.jsonl").read_bytes() == alone[result.name]
        assert result.frames == result.summary["run"]["frames_decoded"] > 0
    assert {p.name for p in seen} == set(alone) and all(p.frames <= (p.total or p.frames) for p in seen)
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["totals"] == {"complete": 3} and index["backend"] == "local"
    entry = index["sources"][0]
    assert entry == {"source": str(clips[0]), "out": "clip0", "status": "complete", "frames": 20,
                     "counts": results[[r.name for r in results].index("clip0")].counts, "error": None}


def test_sources_with_a_stride_share_the_pool_and_match_each_alone(clips, tiny_checkpoint, tmp_path):
    # With --stride, some batches have no frame to infer: their request to the shared pool must come back at once.
    settings = {"model": str(tiny_checkpoint), "video": False, "stride": 2, **LOW}
    segmenter = Segmenter(build_config(**settings))
    with segmenter.run(clips[0], tmp_path / "alone") as run:
        for _ in run:
            pass
    results = list(segment_many([str(c) for c in clips[:2]], out=tmp_path / "many", max_concurrent=2, **settings))
    assert [r.status for r in results] == ["complete", "complete"]
    assert (tmp_path / "many" / "clip0" / "frames.jsonl").read_bytes() == (tmp_path / "alone" / "frames.jsonl").read_bytes()


def test_one_bad_source_fails_alone_and_resume_skips_the_complete(clips, tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    sources = [str(clips[1]), str(broken), str(tmp_path / "missing.mp4")]
    settings = {"model": str(tiny_checkpoint), "video": False, **LOW}
    first = {r.name: r for r in segment_many(sources, out=tmp_path / "out", **settings)}
    assert first["clip1"].status == "complete"
    assert first["broken"].status == first["missing"].status == "failed"
    assert "\n" not in first["broken"].error and "missing.mp4" in first["missing"].error
    (tmp_path / "out" / "clip1" / "summary.json").unlink()  # as if cut short: resume runs it again
    again = {r.name: r for r in segment_many(sources, out=tmp_path / "out", resume=True, **settings)}
    assert again["clip1"].status == "complete" and again["broken"].status == "failed"
    last = {r.name: r for r in segment_many(sources[:1], out=tmp_path / "out", resume=True, **settings)}
    assert last["clip1"].status == "skipped" and last["clip1"].frames == 14
    # Without --resume or --overwrite, an existing run is that source's failure; the run is not touched.
    plain = list(segment_many(sources[:1], out=tmp_path / "out", **settings))
    assert plain[0].status == "failed" and "--overwrite" in plain[0].error


def test_files_not_written_by_streamseg_are_never_replaced(clips, tiny_checkpoint, tmp_path):
    (tmp_path / "index.json").write_text('{"mine": true}')
    with pytest.raises(OutputError, match="not a streamseg index"):
        list(segment_many([str(clips[0])], out=tmp_path, model=str(tiny_checkpoint)))
    assert (tmp_path / "index.json").read_text() == '{"mine": true}'
    (tmp_path / "index.json").unlink()
    (tmp_path / "clip0").mkdir()
    (tmp_path / "clip0" / "notes.txt").write_text("mine")
    result, = segment_many([str(clips[0])], out=tmp_path, model=str(tiny_checkpoint), overwrite=True, video=False)
    assert result.status == "failed" and "not a streamseg run" in result.error
    assert (tmp_path / "clip0" / "notes.txt").read_text() == "mine"


def test_a_live_stream_runs_beside_queued_files(clips, alone, tiny_checkpoint, tmp_path):
    """--max-concurrent 1 queues the files one by one; the stream does not wait for them and stays current."""
    port = free_port()
    server = start_server(port, 60, width=160, height=120)
    try:
        stream = f"tcp://127.0.0.1:{port}"
        seen = []
        results = {r.name: r for r in segment_many([*map(str, clips), stream], out=tmp_path, max_concurrent=1,
                                                   model=str(tiny_checkpoint), video=False, reconnect=False,
                                                   on_progress=seen.append, **LOW)}
    finally:
        server.kill()
        server.wait()
    live = results["127_0_0_1-" + str(port)]
    assert live.status == "complete" and live.summary["source"]["live"] and live.frames >= 10
    assert live.summary["run"]["latency_ms"]["p95"] < 2000  # generous: a shared 2-core machine
    first_file_done = next(i for i, p in enumerate(seen) if p.name == "clip0" and p.frames == p.total)
    assert any(p.name == live.name for p in seen[:first_file_done])  # it started while the first file ran
    for name in alone:
        assert results[name].status == "complete"
        assert (tmp_path / name / "frames.jsonl").read_bytes() == alone[name]


def test_interrupted_runs_are_recorded_incomplete(clips, tiny_checkpoint, tmp_path, monkeypatch):
    def interrupt(progress):
        if progress.frames:
            raise KeyboardInterrupt

    # A model this slow (20 frames: a second) is still running when the interrupt arrives: the tiny model
    # alone could finish the clip between its first progress report and the interrupt's reaching it.
    forward = Predictor.forward

    def slow_forward(self, frames):
        time.sleep(0.05)
        return forward(self, frames)

    monkeypatch.setattr(Predictor, "forward", slow_forward)

    with pytest.raises(KeyboardInterrupt):
        list(segment_many([str(clips[0]), str(clips[2])], out=tmp_path, max_concurrent=1, on_progress=interrupt,
                          model=str(tiny_checkpoint), video=False, **LOW))
    index = json.loads((tmp_path / "index.json").read_text())
    statuses = {e["out"]: (e["status"], e["error"]) for e in index["sources"]}
    assert statuses["clip0"] == ("failed", "interrupted")
    assert json.loads((tmp_path / "clip0" / "summary.json").read_text())["complete"] is False
    assert statuses["clip2"][0] == "pending"  # queued, never started
    monkeypatch.undo()
    again = {r.name: r.status for r in segment_many([str(clips[0]), str(clips[2])], out=tmp_path, resume=True,
                                                    model=str(tiny_checkpoint), video=False, **LOW)}
    assert again == {"clip0": "complete", "clip2": "complete"}


def test_cli_several_sources_with_a_bad_one_and_a_password(clips, tiny_checkpoint, tmp_path):
    listing = tmp_path / "sources.txt"
    listing.write_text(f"{clips[2]}\nrtsp://u:pw@127.0.0.1:1/../../x\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment", str(clips[0]), f"@{listing}", "--model", str(tiny_checkpoint),
                                      "--out", str(out), "--score-threshold", "0.05", "--no-reconnect",
                                      "--timeout", "2", "--quiet", "--export", "mot"])
    assert result.exit_code == 1, result.output
    index = (out / "index.json").read_text()
    assert ":pw@" not in index and "pw" not in "".join(p.name for p in out.iterdir())
    entries = {e["out"]: e for e in json.loads(index)["sources"]}
    assert entries["127_0_0_1-1-x"]["source"] == "rtsp://u:***@127.0.0.1:1/../../x"
    assert entries["127_0_0_1-1-x"]["status"] == "failed" and entries["127_0_0_1-1-x"]["error"]
    assert entries["clip0"]["status"] == entries["clip2"]["status"] == "complete"
    assert (out / "clip2" / "overlay.mp4").stat().st_size > 0 and (out / "clip2" / "frames.mot.txt").exists()
    assert "failed: 127_0_0_1-1-x:" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("arguments, message", [
    (["{clip}", "--resume"], "--resume: for several sources"),
    (["{clip}", "{clip}", "--show"], "--show shows one source"),
    (["{clip}", "{clip}", "--workers", "2"], "apply to --backend ray"),
    (["{clip}", "{clip}", "--backend", "dask"], "unknown backend"),
    (["{clip}", "{dir}", "--model", "nosuch"], "unknown model"),  # before any source: no display, no folder
])
def test_cli_refuses_options_that_do_not_fit(clips, tmp_path, arguments, message):
    result = CliRunner().invoke(app, ["segment", *[a.format(clip=clips[0], dir=clips[0].parent) for a in arguments],
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_python_api_is_exported():
    assert streamseg.segment_many is segment_many and streamseg.SourceResult.__name__ == "SourceResult"
    assert [j.name for j in plan_jobs(["a/x.mp4", "b/x.mp4"], "o")] == ["x", "x-2"]


# The Ray backend, on a small local Ray.

@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_backend_survives_a_killed_worker_and_resume_skips(clips, alone, tiny_checkpoint, tmp_path, local_ray):
    """Two 1-CPU actors; the longest source's actor is SIGKILLed as its run starts: the source runs again
    from the start on a new actor, and every output is byte for byte the run of that source alone."""
    long_clip = clips[0].parent.parent / "long" / "long.mp4"
    long_clip.parent.mkdir(exist_ok=True)
    write_clip(long_clip, frames=90, width=160, height=90, seed=5, objects=3)
    settings = {"model": str(tiny_checkpoint), "video": False, **LOW}
    with Segmenter(build_config(**settings)).run(long_clip, tmp_path / "alone") as run:
        for _ in run:
            pass
    expected = {**alone, "long": (tmp_path / "alone" / "frames.jsonl").read_bytes()}
    killed = []

    def kill_first_attempt(progress):
        if progress.name == "long" and progress.attempt == 1 and not killed:
            killed.append(progress.worker)
            os.kill(progress.worker, signal.SIGKILL)

    sources = [str(long_clip), *map(str, clips)]
    results = list(segment_many(sources, out=tmp_path / "out", backend="ray", workers=2,
                                on_progress=kill_first_attempt, **settings))
    assert killed and all(r.status == "complete" for r in results), [(r.name, r.error) for r in results]
    assert {r.name: r.attempts for r in results}["long"] == 2
    for result in results:
        assert (result.out / "frames.jsonl").read_bytes() == expected[result.name]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["backend"] == "ray" and index["totals"] == {"complete": 4}
    again = list(segment_many(sources, out=tmp_path / "out", backend="ray", resume=True, **settings))
    assert [r.status for r in again] == ["skipped"] * 4


def test_ray_backend_without_ray_installed_is_one_line(clips, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an import of a package that is not installed does
    result = CliRunner().invoke(app, ["segment", str(clips[0]), str(clips[1]), "--backend", "ray",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.stderr.strip() == (
        "streamseg: error: --backend ray needs Ray, which is not installed: pip install 'streamseg[ray]'")
    assert not (tmp_path / "o").exists()
