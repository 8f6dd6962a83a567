"""The manifest stamped beside every engine: what built it, for which GPUs, from which ONNX, with which
plugins and shape profiles. `verify_manifest` re-reads the engine file and checks the stamp against it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel

from deploykit.build.inspect import TensorInfo, inspect_plan
from deploykit.build.profiles import ProfileSpec
from deploykit.errors import DeployKitError

MANIFEST_FORMAT = 1


class FileStamp(BaseModel):
    file: str  # name relative to the manifest's folder
    sha256: str
    bytes: int


class PluginStamp(BaseModel):
    name: str
    namespace: str
    version: str
    sha256: str  # the registration (plugins/tensorrt_v3.py or plugins/aot.py) + the op's launcher package


class ProfileStamp(BaseModel):
    spec: ProfileSpec
    shapes: dict[str, list[list[int]]]  # input -> [min, opt, max] shapes as given to TensorRT


class EngineManifest(BaseModel):
    format: int = MANIFEST_FORMAT
    deploykit_version: str
    tensorrt_flavour: str  # "tensorrt" or "tensorrt-rtx"
    tensorrt_version: str
    targets: list[str]  # compute capabilities, e.g. ["sm89"]
    onnx: FileStamp
    onnx_data: list[FileStamp] = []  # the external-data files holding the weights (model.onnx has none)
    engine: FileStamp
    plugins: list[PluginStamp]  # plugins the engine's PLUGIN_V3 layers use ([] = bodies inlined)
    # "python": IPluginV3 classes whose enqueue calls the Triton launchers (serving needs deploykit's Python);
    # "aot": tensorrt.plugin ahead-of-time plugins with their PTX in the engine (no Python); None: no plugins
    plugin_kind: str | None = None
    plugin_layers: int
    layer_types: dict[str, int]  # parsed network, per TensorRT LayerType
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    profiles: list[ProfileStamp]
    optimization_level: int | None = None  # builder_optimization_level asked for (None: TensorRT's default)
    moe_stages: str | None = None  # MoE lowered to its stage plugins: "pairs" or "grouped (block_m=..)"
    gdn_stages: str | None = None  # GatedDeltaRule lowered to its stage plugins: "stages" or "conditional (..)"
    build_seconds: float


def file_stamp(path: Path, relative_to: Path, name: str | None = None) -> FileStamp:
    """Hash and size of `path`, named relative to the manifest's folder (or `name`: the file's final name)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if name is None:
        try:
            name = str(Path(path).resolve().relative_to(relative_to.resolve()))
        except ValueError:
            name = str(Path(path).resolve())
    return FileStamp(file=name, sha256=h.hexdigest(), bytes=Path(path).stat().st_size)


def manifest_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def load_manifest(path: Path) -> EngineManifest:
    try:
        return EngineManifest.model_validate_json(Path(path).read_text())
    except FileNotFoundError as exc:
        raise DeployKitError(f"no manifest at {path}", "build the engine with `deploykit build`") from exc


def verify_manifest(engine_path: Path) -> EngineManifest:
    """Checks the stamp against the engine file: hash, size, targets and plugin layers. Raises on mismatch."""
    engine_path = Path(engine_path)
    m = load_manifest(manifest_path(engine_path))
    stamp = file_stamp(engine_path, engine_path.parent)
    problems = []
    if (stamp.sha256, stamp.bytes) != (m.engine.sha256, m.engine.bytes):
        problems.append("engine hash/size differ from the manifest")
    if m.tensorrt_flavour == "tensorrt-rtx":  # the plan text is a TensorRT for RTX feature
        io = {t.name: t for t in (*m.inputs, *m.outputs)}
        plan = inspect_plan(engine_path.read_bytes(), tuple(p.name for p in m.plugins), tuple(io))
        if plan.targets != sorted(m.targets):
            problems.append(f"engine targets {plan.targets} != manifest {sorted(m.targets)}")
        if len(plan.plugin_layers) != m.plugin_layers:
            problems.append(f"engine has {len(plan.plugin_layers)} plugin layers, manifest says {m.plugin_layers}")
        if plan.plugin_types != sorted(p.name for p in m.plugins):
            problems.append(f"engine plugins {plan.plugin_types} != manifest {sorted(p.name for p in m.plugins)}")
        if plan.profiles != len(m.profiles):
            problems.append(f"engine has {plan.profiles} profiles, manifest {len(m.profiles)}")
        if not plan.tensors:
            problems.append("none of the manifest's I/O tensors is in the engine")
        for t in plan.tensors:
            want = io[t.name]
            if t.dtype != want.dtype or len(t.shape) != len(want.shape) or any(
                    a != b for a, b in zip(t.shape, want.shape, strict=True) if a >= 0 and b >= 0):
                problems.append(f"engine tensor {t.name} is {t.dtype}{t.shape}, manifest {want.dtype}{want.shape}")
    if problems:
        raise DeployKitError(f"{engine_path} does not match its manifest: {'; '.join(problems)}",
                             "rebuild the engine with `deploykit build`")
    return m
