"""The output directory: streamseg removes only the files a run wrote, never a user's."""

import pytest

from streamseg.errors import OutputError
from streamseg.outputs import is_run_file, prepare_output_dir

from .test_segment import LOW, run_cli


def a_finished_run(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("overlay.mp4", "frames.jsonl", "summary.json", "frames.mot.txt", "frames.ytvis.json"):
        (folder / name).write_text("old run")
    return folder


def test_overwrite_keeps_a_users_file_byte_for_byte(tmp_path, synth_clip, tiny_checkpoint):
    folder = a_finished_run(tmp_path / "data")
    precious = folder / "thesis.docx"
    precious.write_bytes(b"\x00years of work\xff")
    result = run_cli("segment", synth_clip, "--model", tiny_checkpoint, "--out", folder, "--overwrite", "-q",
                     "--max-frames", "2", *LOW)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"streamseg: error: {folder}: holds files that are not a streamseg run (thesis.docx); "
        "choose an empty or new --out"]
    assert precious.read_bytes() == b"\x00years of work\xff"
    assert (folder / "frames.jsonl").read_text() == "old run"  # the run's own files are left too: nothing started


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_with_a_subfolder_is_refused_and_untouched(tmp_path, overwrite):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"cat")
    with pytest.raises(OutputError, match="photos"):
        prepare_output_dir(tmp_path, overwrite)
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"cat"


def test_home_like_folder_with_many_files_names_a_few(tmp_path):
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt"):
        (tmp_path / name).write_text(name)
    with pytest.raises(OutputError, match=r"\(a.txt, b.txt, c.txt and 2 more\)"):
        prepare_output_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]


def test_overwrite_replaces_a_run_and_its_leftover_temporary_files(tmp_path):
    folder = a_finished_run(tmp_path / "run")
    (folder / ".summary.json.0123456789ab.tmp").write_text("{")  # a summary write cut by a crash
    (folder / "frames.mots.txt.tmp").write_text("1 2")  # an export cut by a crash
    with pytest.raises(OutputError, match="already holds a run; pass --overwrite"):
        prepare_output_dir(folder, overwrite=False)
    prepare_output_dir(folder, overwrite=True)
    assert list(folder.iterdir()) == []


def test_a_symlink_named_like_a_run_file_is_not_ours(tmp_path):
    target = tmp_path / "elsewhere.mp4"
    target.write_bytes(b"user video")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "overlay.mp4").symlink_to(target)
    assert not is_run_file(folder / "overlay.mp4")
    with pytest.raises(OutputError, match="not a streamseg run"):
        prepare_output_dir(folder, overwrite=True)
    assert target.read_bytes() == b"user video"


@pytest.mark.parametrize("name", ["notes.tmp", ".summary.json.tmp", "frames.jsonl.bak", "overlay.mp4.old"])
def test_names_close_to_run_files_are_not_run_files(tmp_path, name):
    (tmp_path / name).write_text("x")
    assert not is_run_file(tmp_path / name)


def test_a_new_nested_folder_is_created(tmp_path):
    prepare_output_dir(tmp_path / "a" / "b", overwrite=False)
    assert (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []
