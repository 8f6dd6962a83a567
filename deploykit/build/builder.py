"""Exported ONNX -> TensorRT engine + manifest, written against the API both TensorRT flavours share.

Flow: optionally lower each MoE / GatedDeltaRule node to its single-kernel stage ops (`moe_stages`, `gdn_stages`;
deploykit/build/lower.py)
-> register deploykit's plugins (or not: then every deploykit node is built from its model-local
function body) -> parse with TensorRT's own ONNX parser -> check that every deploykit node became what
was asked for -> one optimization profile per ProfileSpec -> build for the target compute capabilities
-> write engine and manifest atomically (temp file + rename, nothing partial on failure).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from deploykit import __version__
from deploykit.build import registration
from deploykit.build.inspect import NetworkReport, inspect_network
from deploykit.build.manifest import EngineManifest, ProfileStamp, file_stamp, manifest_path
from deploykit.build.profiles import ProfileSpec, default_profiles, input_shapes
from deploykit.build.trt_backend import Backend, TrtLog, load_backend
from deploykit.errors import DeployKitError
from deploykit.ops.contract import DOMAIN, PLUGIN_OPS


class BuildOptions(BaseModel):
    backend: str = "tensorrt-rtx"
    targets: list[str] = Field(default_factory=list)  # [] = the backend's default: sm89 (RTX), the local GPU
    profiles: list[ProfileSpec] = Field(default_factory=default_profiles)
    plugins: bool = True  # False: build every deploykit node from its reference body
    optimization_level: int | None = None  # TensorRT builder_optimization_level (0-5); None = TensorRT default
    dim_roles: dict[str, str] = Field(default_factory=dict)  # extra symbolic dim -> batch/tokens/past/total/flat
    moe_stages: bool = False  # replace each MoE node by its single-kernel stage plugins (deploykit/build/lower.py)
    gdn_stages: bool = False  # GatedDeltaRule's three stage plugins for prompts of >= 64 tokens (same module)
    # tensorrt.plugin ahead-of-time plugins (PTX embedded, no Python when the engine runs; datacenter TensorRT)
    # instead of the IPluginV3 classes that call the Triton launchers (deploykit/build/registration.py)
    aot_plugins: bool = False

    @property
    def plugin_kind(self) -> str | None:
        """What registration.activate registers: "python", "aot", or None (reference bodies inlined)."""
        if not self.plugins:
            return None
        return "aot" if self.aot_plugins else "python"


@dataclass
class ParsedModel:
    backend: Backend
    builder: object
    network: object
    parser: object  # owns the weights: keep alive until the build is done
    report: NetworkReport
    onnx_inputs: list[tuple[str, tuple]]  # graph inputs with ints or symbolic dim names
    deploykit_nodes: list[tuple[str, str]]  # (node name, op_type) of every deploykit-domain node
    data_files: list[Path]  # external-data files the initializers point into (the weights)
    log: TrtLog = field(default_factory=TrtLog)


@dataclass
class BuildResult:
    engine_path: Path
    manifest_path: Path
    manifest: EngineManifest
    parsed: ParsedModel


def _load_graph(path: Path):
    """The ONNX model without its weights (external data stays on disk), its fixed dims checked."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError / ParseError: not an ONNX file at all
        raise DeployKitError(f"{path.name} is not an ONNX model ({type(exc).__name__})",
                             "pass the model.onnx of a `deploykit export` folder") from None
    _check_contract_dims(model, path)
    return model


def _check_contract_dims(model, path: Path) -> None:
    """What the kernels would refuse, on the dims the graph fixes (`OpSpec.check_static`, which the deploykit
    schemas' shape inference runs), as one line before TensorRT sees it. TensorRT's parser would refuse it
    too, through the plugins' own check, but as "Invalid Node" with a traceback on stderr (TensorRT for RTX
    1.7.1)."""
    import onnx

    from deploykit.export.schemas import register_schemas
    from deploykit.ops.contract import ContractError

    register_schemas()
    try:
        onnx.shape_inference.infer_shapes(model)
    except ContractError as exc:  # the contract's message (op, requirement, values, why), through ONNX's C++
        raise DeployKitError(f"{path.name} cannot be built: {exc}",
                             "its dims break the op contract (docs/model.md): fix them, or export the model "
                             "again with `deploykit export`") from None


def _all_nodes(graph) -> Iterator:
    """Every node of `graph`, those of its subgraphs (an If's branches: --gdn-stages) included."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            for sub in (a.g, *a.graphs) if a.HasField("g") else a.graphs:
                yield from _all_nodes(sub)


def _onnx_outline(path: Path) -> tuple[list[tuple[str, tuple]], list[tuple[str, str]], dict[str, str], list[Path]]:
    """Graph inputs (with dim names), deploykit nodes, their plugin_version and the external-data files, read
    without the weights."""
    model = _load_graph(path)
    inits = {i.name for i in model.graph.initializer}
    inputs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                     for d in vi.type.tensor_type.shape.dim)
        inputs.append((vi.name, dims))
    ours = [n for n in _all_nodes(model.graph) if n.domain == DOMAIN]
    nodes = [(n.name, n.op_type) for n in ours]
    versions = {n.op_type: next((a.s.decode() for a in n.attribute if a.name == "plugin_version"), "1")
                for n in ours}
    data = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    return inputs, nodes, versions, [path.parent / n for n in sorted(data) if (path.parent / n).is_file()]


def _parse_error(parser, path: Path, versions: dict[str, str]) -> DeployKitError:
    err = parser.get_error(0)
    desc = err.desc()
    quoted = re.search(r'"([^"]+)"\s*$', desc)  # TensorRT wraps some messages as: check && "message"
    message = quoted.group(1) if quoted else desc.splitlines()[0]
    where = f" at node '{err.node_name() or '?'}' ({err.node_operator()})" if err.node_operator() else ""
    hint = "see the TensorRT log with DEPLOYKIT_DEBUG=1"
    if "Plugin not found" in message:
        op = err.node_operator()
        ours = f"version {PLUGIN_OPS[op].plugin_version}" if op in PLUGIN_OPS else "no plugin of that name"
        hint = (f"deploykit registers {ours} for {op} in namespace '{DOMAIN}'; the node asks for version "
                f"{versions.get(op, '?')}: re-export the model")
    return DeployKitError(f"TensorRT could not parse {path.name}{where}: {message}", hint)


def parse_onnx(onnx_path: str | Path, backend: Backend | str = "tensorrt-rtx",
               plugins: bool | str | None = True) -> ParsedModel:
    """TensorRT's ONNX parser on the exported model; deploykit nodes become plugins (of the registration kind
    `plugins`: True/"python" or "aot") or inlined bodies (False/None)."""
    path = Path(onnx_path)
    if not path.is_file():
        raise DeployKitError(f"no ONNX model at {path}", "export one with `deploykit export`")
    backend = load_backend(backend) if isinstance(backend, str) else backend
    inputs, nodes, versions, data_files = _onnx_outline(path)
    if plugins == "aot" and any(op == "MoE" for _, op in nodes):
        raise DeployKitError("MoE's own plugin runs its kernels from Python, so it has no ahead-of-time form",
                             "add --moe-stages: MoE's stage ops are one ahead-of-time kernel each")
    log = TrtLog()
    logger = backend.logger(log)
    with registration.plugins_registered(backend, plugins):
        builder = backend.trt.Builder(logger)
        network = backend.create_network(builder)
        parser = backend.trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(path)):
            raise _parse_error(parser, path, versions)
        report = inspect_network(backend.trt, network)
    parsed = ParsedModel(backend, builder, network, parser, report, inputs, nodes, data_files, log)
    _check_plugin_layers(parsed, bool(plugins))
    return parsed


def _check_plugin_layers(parsed: ParsedModel, plugins: bool) -> None:
    """The parser silently inlines a body when no plugin matches (name, version, namespace): catch that."""
    n_plugins, n_nodes = len(parsed.report.plugin_layers()), len(parsed.deploykit_nodes)
    if plugins and n_plugins != n_nodes:
        raise DeployKitError(f"{n_nodes - n_plugins} of {n_nodes} deploykit nodes were built from their reference "
                             "bodies instead of plugins",
                             "export with plugin_namespace='deploykit' and the contract's plugin_version")
    if not plugins and n_plugins:
        raise DeployKitError(f"{n_plugins} plugin layers remain with plugins disabled",
                             "another library registered deploykit plugins in this process")


def _add_profiles(parsed: ParsedModel, config, profiles: list[ProfileSpec],
                  dim_roles: dict[str, str]) -> list[ProfileStamp]:
    dynamic = [(n, dims) for n, dims in parsed.onnx_inputs if any(not isinstance(d, int) or d < 0 for d in dims)]
    stamps = []
    for spec in profiles:
        shapes = input_shapes(spec, dynamic, dim_roles)
        profile = parsed.builder.create_optimization_profile()
        for name, (lo, mid, hi) in shapes.items():
            profile.set_shape(name, lo, mid, hi)
        config.add_optimization_profile(profile)
        stamps.append(ProfileStamp(spec=spec, shapes={k: [list(s) for s in v] for k, v in shapes.items()}))
    return stamps


def _build_hint(parsed: ParsedModel, options: BuildOptions, error: str) -> str:
    # TensorRT for RTX 1.7.1 fails in Myelin ("CHECK(is_const()) failed") on the GatedDeltaRule reference body
    # (ONNX Scan -> loop layers) when a profile pins batch to 1 while tokens vary (tests/builder/test_builder.py).
    # The body is built when plugins are off, or when the export was decomposed (no deploykit nodes left).
    backend = parsed.backend
    pinned = [p.name for p in options.profiles if p.batch.max == 1 and p.tokens.min != p.tokens.max]
    inlined = not options.plugins or not parsed.deploykit_nodes
    if backend.is_rtx and inlined and "is_const" in error and pinned:
        return (f"known TensorRT for RTX {backend.version} failure for the inlined GatedDeltaRule body with batch "
                f"fixed at 1 (profile {', '.join(pinned)}): use --max-batch 2 or build with plugins")
    return "see the TensorRT log with DEPLOYKIT_DEBUG=1"


def _write_temp(path: Path, data) -> Path:
    """Writes `data` (bytes or a buffer such as TensorRT's IHostMemory, not copied) beside `path`; returns the temp."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; an engine is read by servers of other users
        with os.fdopen(fd, "wb") as f:
            f.write(memoryview(data))
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_engine_path(onnx_path: Path, targets: list[str], plugins: bool) -> Path:
    """OUT/model.onnx -> OUT/model.sm89-sm120.engine (".inlined" before ".engine" without plugins)."""
    suffix = "" if plugins else ".inlined"
    return onnx_path.with_name(f"{onnx_path.stem}.{'-'.join(targets)}{suffix}.engine")


@dataclass(frozen=True)
class Lowerings:
    moe: str | None = None  # how MoE was lowered ("pairs", "grouped (block_m=..)"), None: not
    gdn: str | None = None  # how GatedDeltaRule was ("stages", "conditional (..)"), None: not


@contextlib.contextmanager
def lowered_model(onnx_path: Path, options: BuildOptions) -> Iterator[tuple[Path, Lowerings]]:
    """The model TensorRT parses: `onnx_path` itself, or with `moe_stages` / `gdn_stages` a lowered copy written
    beside it (so its external-data references still resolve) and removed afterwards."""
    if not (options.moe_stages or options.gdn_stages):
        yield onnx_path, Lowerings()
        return
    flags = " / ".join(f for f, on in (("--moe-stages", options.moe_stages), ("--gdn-stages", options.gdn_stages))
                       if on)
    if not options.plugins:
        raise DeployKitError(f"{flags} replaces nodes by plugins, but plugins are disabled",
                             f"drop --no-plugins, or drop {flags}")
    from deploykit.build.lower import lower_gdn, lower_moe

    model = _load_graph(onnx_path)
    moe = gdn = None
    if options.moe_stages:
        flat = [p.role("flat") for p in options.profiles]
        model, moe = lower_moe(model, max(f.max for f in flat), min(f.min for f in flat))
    if options.gdn_stages:
        tokens = [p.role("tokens") for p in options.profiles]
        model, gdn = lower_gdn(model, min(t.min for t in tokens), max(t.max for t in tokens))
    how = Lowerings(moe.describe() if moe else None, gdn.describe() if gdn else None)
    if how == Lowerings():
        yield onnx_path, how
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=onnx_path.parent, prefix=f".{onnx_path.stem}.lowered.", suffix=".onnx")
    except OSError as exc:
        raise DeployKitError(f"cannot write the lowered model beside {onnx_path.name} ({exc.strerror})",
                             f"{flags} needs the export folder writable (its weights are referenced from there)"
                             ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        yield Path(tmp), how
    finally:
        os.unlink(tmp)


def build_engine(onnx_path: str | Path, engine_path: str | Path | None = None,
                 options: BuildOptions | None = None) -> BuildResult:
    """Parses, builds, and writes `engine_path` plus `engine_path.json` (the manifest)."""
    options = options or BuildOptions()
    onnx_path = Path(onnx_path)
    if options.optimization_level is not None and not 0 <= options.optimization_level <= 5:
        raise DeployKitError(f"optimization level {options.optimization_level} is out of range", "use 0-5")
    if not onnx_path.is_file():
        raise DeployKitError(f"no ONNX model at {onnx_path}", "export one with `deploykit export`")
    if options.aot_plugins and not options.plugins:
        raise DeployKitError("--aot-plugins asks for plugins, but plugins are disabled",
                             "drop --no-plugins, or drop --aot-plugins")
    with lowered_model(onnx_path, options) as (parse_path, lowerings):
        return _build(onnx_path, parse_path, lowerings, engine_path, options)


def _build(onnx_path: Path, parse_path: Path, lowerings: Lowerings, engine_path: str | Path | None,
           options: BuildOptions) -> BuildResult:
    start = time.perf_counter()
    parsed = parse_onnx(parse_path, options.backend, options.plugin_kind)
    backend = parsed.backend
    config = parsed.builder.create_builder_config()
    targets = backend.set_targets(config, options.targets)
    if options.optimization_level is not None:
        config.builder_optimization_level = options.optimization_level
    profile_stamps = _add_profiles(parsed, config, options.profiles, options.dim_roles)
    with registration.plugins_registered(backend, options.plugin_kind):
        engine = parsed.builder.build_serialized_network(parsed.network, config)
    if engine is None:
        errors = parsed.log.errors() or ["no error message"]
        raise DeployKitError(f"TensorRT could not build {onnx_path.name}: {errors[-1].splitlines()[0]}",
                             _build_hint(parsed, options, errors[-1]))
    engine_path = Path(engine_path) if engine_path else default_engine_path(onnx_path, targets, options.plugins)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_engine = _write_temp(engine_path, engine)
    del engine  # the engine can be several GiB: free it before hashing
    try:
        used = {op for _, op in parsed.deploykit_nodes} if parsed.report.plugin_layers() else set()
        manifest = EngineManifest(
            deploykit_version=__version__, tensorrt_flavour=backend.name, tensorrt_version=backend.version,
            targets=targets, onnx=file_stamp(onnx_path, engine_path.parent),
            onnx_data=[file_stamp(f, engine_path.parent) for f in parsed.data_files],
            engine=file_stamp(tmp_engine, engine_path.parent, name=engine_path.name),
            plugins=[p for p in registration.plugin_stamps(options.plugin_kind or "python") if p.name in used],
            plugin_kind=options.plugin_kind if used else None,
            plugin_layers=len(parsed.report.plugin_layers()), layer_types=parsed.report.layer_types(),
            inputs=parsed.report.inputs, outputs=parsed.report.outputs, profiles=profile_stamps,
            optimization_level=options.optimization_level, moe_stages=lowerings.moe, gdn_stages=lowerings.gdn,
            build_seconds=round(time.perf_counter() - start, 3),
        )
        tmp_manifest = _write_temp(engine_path, manifest.model_dump_json(indent=2).encode())
    except BaseException:
        tmp_engine.unlink()
        raise
    os.replace(tmp_engine, engine_path)  # engine first: a manifest never describes a missing engine
    os.replace(tmp_manifest, manifest_path(engine_path))
    return BuildResult(engine_path, manifest_path(engine_path), manifest, parsed)
