"""The forward pass in OpenVINO on the CPU: the exported graph, compiled once and cached on disk.

A cache entry is an OpenVINO IR (fp32 weights) in a folder named by a key of everything the exported
graph depends on: the weights, the architecture, the settings the trace holds as constants (input
size, score threshold, detections per image, ...), the code that is traced and the versions of
torch, torchvision and OpenVINO. A change to any of them is another entry, so an entry is never
stale. Beside the IR, OpenVINO keeps its compiled blobs (its ``CACHE_DIR``, keyed by OpenVINO by the
compile settings: precision, streams, threads), which makes later starts take well under a second.
An entry is written in a folder of its own and renamed into place, with a manifest of checksums
last; one that fails its checksums is rebuilt with one line of notice.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openvino
import torch
import torchvision

from ..instances import Frame
from ..models.registry import LoadedModel
from ..system import usable_cpus
from . import graph as graph_module
from .base import RawDetections
from .graph import DetectionGraph, export_onnx

log = logging.getLogger("streamseg.runtimes")

CACHE_ENV = "STREAMSEG_CACHE_DIR"
MANIFEST = "manifest.json"
IR_FILES = ("model.xml", "model.bin")
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}
# Frame sizes given a graph of their own by prepare() (static shapes: 12 % faster with 2 threads, 23 % with 1,
# than the dynamic graph on 512x288 frames); other sizes, and more than this, run in the dynamic graph.
STATIC_SHAPES = 4


@functools.cache
def openvino_core() -> openvino.Core:
    """The process's one OpenVINO Core, never released: the one piece of process-wide state here, kept
    on purpose. OpenVINO's CPU plugin (2026.4, one per Core) gives the thread that creates it a signal
    stack of its own, and unmaps it when released, restoring the thread's previous stack only when
    released from that same thread and last in, first out. A plugin released any other way (its Core
    garbage-collected in a pipeline thread, or released before a later one) leaves a thread whose
    signal stack is gone, and the next signal that thread handles (a child process ending) kills the
    process with a segmentation fault."""
    return openvino.Core()


class DamagedCache(Exception):
    """A cache entry whose files are missing or not the ones written."""


def cache_root() -> Path:
    """Where streamseg keeps what it builds once: ``$STREAMSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/streamseg``,
    else ``~/.cache/streamseg``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamseg"


def _file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over every tensor's name, shape, type and bytes."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def cache_key(graph: DetectionGraph, model: LoadedModel) -> str:
    """The name of the cache entry for ``graph``: a digest of everything its export depends on."""
    # The traced code: this package's graph and the backbone's own module (the compact backbone is
    # ours; torchvision's is covered by its version too).
    traced = [inspect.getfile(graph_module), inspect.getfile(type(graph.backbone))]
    identity = {
        "weights": weights_digest(graph),
        "architecture": model.architecture,
        "config": model.config,
        "graph": graph.settings(),
        "code": [_file_digest(Path(path)) for path in traced],
        "versions": {"openvino": openvino.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


class OpenVinoRuntime:
    """One compiled model with a stream per calling thread (``workers``), sharing the usable CPUs.

    Each thread that calls ``forward`` gets its own infer request; OpenVINO runs the requests side by
    side, one per stream, each on its share of the threads. Outputs are copied out of the request, so
    the next inference cannot overwrite detections still waiting for postprocessing.
    """

    def __init__(self, graph: DetectionGraph, model: LoadedModel, precision: str = "fp32", workers: int = 1,
                 cache_dir: Path | None = None):
        self.graph = graph
        self.model_name = model.name
        self.core = openvino_core()
        self.entry = Path(cache_dir or cache_root()) / "openvino" / cache_key(graph, model)
        self._ensure_entry()
        self._settings = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
            "NUM_STREAMS": workers,
            "INFERENCE_NUM_THREADS": usable_cpus(),
            "CACHE_DIR": str(self.entry / "compiled"),
        }
        # OpenVINO's Python binding builds its table of element types on first use, inside a C++ static
        # initialiser that waits for the GIL: two inference threads making their first call at once
        # deadlocked (2026.4; half the time with six threads). Built here, in one thread, first.
        openvino.Type.f32.to_dtype()
        # OpenVINO falls back to fp32 where the CPU lacks bf16; it says so in the capabilities it lists.
        capable = precision == "fp32" or precision.upper() in self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        self.precision = precision if capable else "fp32"
        if precision != self.precision:
            log.warning("this CPU cannot run %s in OpenVINO; running %s", precision, self.precision)
        # Compiled when first needed: a file run uses only its frame size's graph (prepare), and the dynamic
        # graph it would not use held 80-100 MB once compiled (1080p run, 2026-12-01).
        self._dynamic: openvino.CompiledModel | None = None
        self._by_shape: dict[tuple[int, ...], openvino.CompiledModel] = {}
        self._compiling = threading.Lock()
        self._requests = threading.local()

    def describe(self) -> dict:
        compiled = next(iter(self._by_shape.values()), None) or self._dynamic_graph()
        return {"runtime": "openvino", "precision": self.precision, "openvino": openvino.__version__,
                "streams": compiled.get_property("NUM_STREAMS"),
                "threads": compiled.get_property("INFERENCE_NUM_THREADS")}

    def _compile(self, shape: tuple[int, ...] | None) -> openvino.CompiledModel:
        """The graph compiled for frames of ``shape``, or for any size (None). Callers hold ``_compiling``."""
        model = self.core.read_model(self.entry / IR_FILES[0])
        if shape is not None:
            model.reshape({0: list(shape)})
        return self.core.compile_model(model, "CPU", self._settings)

    def _dynamic_graph(self) -> openvino.CompiledModel:
        with self._compiling:
            if self._dynamic is None:
                self._dynamic = self._compile(None)
            return self._dynamic

    def _ensure_entry(self) -> None:
        """A cache entry whose files match their manifest: the one there, or one built now."""
        if self.entry.exists():
            try:
                self._verify()
                return
            except (DamagedCache, OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("the OpenVINO cache %s is damaged (%s); rebuilding it", self.entry, exc)
                shutil.rmtree(self.entry, ignore_errors=True)
        log.info("exporting %s to OpenVINO, once for these settings: a few seconds", self.model_name)
        self._build()

    def _verify(self) -> None:
        manifest = json.loads((self.entry / MANIFEST).read_text())
        for name in IR_FILES:
            if _file_digest(self.entry / name) != manifest["files"][name]:
                raise DamagedCache(f"{name} does not match its checksum")

    def _build(self) -> None:
        """Export, convert and write the IR in a folder of its own, then rename it into place: a run cut
        short, or another process building the same entry, never leaves a half-written one."""
        partial = self.entry.with_name(f"{self.entry.name}.partial-{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            onnx = export_onnx(self.graph, partial / "model.onnx")
            ir = self.core.read_model(onnx)
            openvino.save_model(ir, partial / IR_FILES[0], compress_to_fp16=False)  # the weights stay fp32
            del ir  # it may hold the ONNX file open
            onnx.unlink()
            files = {name: _file_digest(partial / name) for name in IR_FILES}
            (partial / MANIFEST).write_text(json.dumps({"model": self.model_name, "files": files,
                                                        "graph": self.graph.settings()}, indent=1))
            try:
                partial.rename(self.entry)
            except OSError:  # another process published this entry meanwhile; theirs is the same
                self._verify()
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def prepare(self, shape: tuple[int, ...] | None) -> None:
        """Compile the graph for frames of ``shape`` alone (up to STATIC_SHAPES shapes; OpenVINO keeps the
        compiled blob on disk too), or for any size (None: a live source's): called before a run, since
        compiling takes a fraction of a second that no frame should wait for."""
        if shape is None:
            self._dynamic_graph()
            return
        with self._compiling:
            if shape in self._by_shape or len(self._by_shape) >= STATIC_SHAPES:
                return
            self._by_shape[shape] = self._compile(shape)

    def _request(self, shape: tuple[int, ...]) -> openvino.InferRequest:
        """This thread's infer request for frames of ``shape``."""
        requests = getattr(self._requests, "by_graph", None)  # id of a compiled graph: its request
        if requests is None:
            requests = self._requests.by_graph = {}
        compiled = self._by_shape.get(shape) or self._dynamic_graph()  # the dynamic graph for sizes not prepared
        request = requests.get(id(compiled))
        if request is None:
            request = requests[id(compiled)] = compiled.create_infer_request()
        return request

    def forward(self, frames: Sequence[Frame]) -> list[RawDetections]:
        raws = []
        for frame in frames:  # the graph takes one frame: CPU passes are one frame each anyway
            request = self._request(frame.image.shape)
            outputs = request.infer({0: np.ascontiguousarray(frame.image)}, share_inputs=True).to_tuple()
            raws.append(RawDetections(*(torch.from_numpy(output) for output in outputs)))
        return raws
