"""streamseg installs and runs outside its checkout: a wheel built from it holds every module, the
shipped model and the presets, and, installed into a fresh virtual environment, segments a clip with
the default model. An editable install (how `make test` installs) finds the model, and the presets by name.

The fresh environments borrow torch and the other dependencies from the one running the tests
rather than installing them again (no network, and torch is big)."""

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What a checkout holds besides its sources: outputs of builds, runs and tools.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "runs", "build", "dist", ".whl", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
# Run in an installed environment: where streamseg, the shipped model and the presets are found.
# Without importing streamseg.models, which imports torch: seconds per run on a small CPU.
REPORT = """
import importlib.util, json, pathlib
from importlib import resources
models = importlib.util.find_spec("streamseg.models").submodule_search_locations[0]
print(json.dumps({
    "package": importlib.util.find_spec("streamseg").origin,
    "model": str(pathlib.Path(models, "shapes-maskrcnn.pt")),
    "presets": sorted(p.name.removesuffix(".toml") for p in resources.files("streamseg.presets").iterdir()
                      if p.name.endswith(".toml")),
}))
"""
# Run in an installed environment: presets by name, wherever the command runs; a file of that name wins.
BY_NAME = """
import pathlib
from streamseg.config import build_config
from streamseg.errors import InputError
assert build_config("cpu-fast").stride == 2
try:
    build_config("no-such-preset")
except InputError as exc:
    print(exc)
pathlib.Path("cpu-fast").write_text("stride = 3")
assert build_config("cpu-fast").stride == 3
"""
PRESETS = sorted(p.stem for p in (REPO / "configs").glob("*.toml"))


def _run(*command, cwd=None) -> str:
    # PYTHONPATH (the checkout, in some setups) would shadow the installed package.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _checkout_copy(tmp_path: Path) -> Path:
    """The checkout's sources, copied: pip builds in the source tree, and a test must not leave
    build/ and egg-info in the checkout."""
    return Path(shutil.copytree(REPO, tmp_path / "checkout", ignore=NOT_SOURCES))


def _fresh_venv(path: Path) -> Path:
    """A virtual environment with nothing installed, whose Python also searches the site-packages of
    the one running the tests, through a .pth file: listed there, they come after the new venv's own
    site-packages, and the .pth files in them (an editable install's finder of the checkout) do not run."""
    _run(sys.executable, "-m", "venv", "--without-pip", path)
    python = path / "bin" / "python"
    own_site = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    Path(own_site, "test-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def _pip_install(python: Path, *args) -> None:
    """pip from the test environment, installing into ``python``'s environment, offline."""
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", *args)


def test_a_wheel_holds_the_model_and_presets_and_segments_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "-w", dist, _checkout_copy(tmp_path))
    [wheel] = dist.glob("*.whl")
    files = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "streamseg").rglob("*.py")}
    assert not modules - files, "modules left out of the wheel"
    assert "streamseg/models/shapes-maskrcnn.pt" in files
    assert {f"streamseg/presets/{name}.toml" for name in PRESETS} <= files
    assert not [f for f in files if f.startswith(("samples/", "configs/", "tests/"))]

    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = json.loads(_run(python, "-c", REPORT, cwd=elsewhere))
    assert Path(report["package"]).is_relative_to(tmp_path / "venv"), report
    assert Path(report["model"]).is_file() and report["presets"] == PRESETS, report

    streamseg = python.parent / "streamseg"  # the console script the wheel installed
    _run(streamseg, "synth", "clip.mp4", "--frames", "5", "--size", "160x96", cwd=elsewhere)
    # The default preset, by name: the defaults (tests/test_config.py holds it to them), the default model.
    _run(streamseg, "segment", "clip.mp4", "--config", "default", "--out", "run", "--quiet", cwd=elsewhere)
    summary = json.loads((elsewhere / "run" / "summary.json").read_text())
    assert summary["complete"] and summary["model"]["name"] == "shapes"


def test_an_editable_install_finds_the_model_and_presets_by_name(tmp_path):
    checkout = _checkout_copy(tmp_path)
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, "--no-build-isolation", "--editable", checkout)
    report = json.loads(_run(python, "-c", REPORT, cwd=tmp_path))
    assert Path(report["package"]).is_relative_to(checkout), report
    assert Path(report["model"]).is_relative_to(checkout) and Path(report["model"]).is_file(), report
    assert report["presets"] == PRESETS
    message = _run(python, "-c", BY_NAME, cwd=tmp_path).strip()
    assert message == f"no-such-preset: no such config file or preset (presets: {', '.join(PRESETS)})"
