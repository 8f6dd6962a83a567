"""Registers deploykit's plugin creators with TensorRT's process-wide registry, in one of two kinds:

  * "python": the IPluginV3 classes of plugins/tensorrt_v3.py (both TensorRT flavours). Their `enqueue` runs
    the Triton launchers from Python, so the engine needs deploykit in the serving process.
  * "aot": the `tensorrt.plugin` QDP registrations of plugins/*/qdp.py (datacenter TensorRT only). Each
    plugin embeds one compiled PTX kernel (`aot_impl`), so the engine runs without Python. MoE itself is a
    JIT plugin there; the builder's `--moe-stages` lowering replaces it by its single-kernel stage ops.

Both kinds carry the same names, so at most one is registered at a time. TensorRT keeps raw pointers to Python
creators, so the creator objects live here for as long as the process does. `plugins_registered(backend,
None)` takes them out, which makes the ONNX parser fall back to each node's model-local function body.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

from deploykit.build.manifest import PluginStamp
from deploykit.errors import DeployKitError
from deploykit.ops.contract import ALL_OPS, DOMAIN, PLUGIN_OPS

KINDS = ("python", "aot")
AOT_MODULES = ("deploykit.plugins.gated_delta_net.qdp", "deploykit.plugins.moe.qdp")
NAMESPACE = DOMAIN  # the exporter's plugin_namespace, tensorrt_v3.NAMESPACE and the qdp modules' plugin ids

_CREATORS: dict[tuple[str, str], dict[str, object]] = {}  # (backend name, kind) -> {op name: creator}
_ACTIVE: dict[str, str] = {}  # backend name -> the kind registered now


def _make_creators(backend, kind: str) -> dict[str, object]:
    """New creators, registered. tensorrt.plugin registers its creators when the qdp modules are imported."""
    if kind == "python":
        from deploykit.plugins import tensorrt_v3

        backend.fix_plugin_library()
        creators = tensorrt_v3.make_creators(backend.trt)
        for creator in creators.values():
            backend.register_creator(creator, NAMESPACE)
        return creators
    for module in AOT_MODULES:
        importlib.import_module(module)
    registry = backend.trt.get_plugin_registry()
    # CausalConv1d too: its qdp module registers it (exports lower it to standard ops)
    return {name: registry.get_creator(name, spec.plugin_version, NAMESPACE) for name, spec in ALL_OPS.items()}


def activate(backend, kind: str | None) -> None:
    """Makes `kind` ("python", "aot" or None) the registered plugin kind for this backend."""
    if kind not in (*KINDS, None):
        raise ValueError(f"plugin kind must be one of {KINDS} or None, got {kind!r}")
    if kind == "aot" and backend.is_rtx:
        raise DeployKitError("TensorRT for RTX has no tensorrt.plugin, so no ahead-of-time (Python-free) plugins",
                             "build on the target GPU with datacenter TensorRT (--backend tensorrt), "
                             "or drop --aot-plugins")
    current = _ACTIVE.get(backend.name)
    if current == kind:
        return
    _set(backend, current, False)  # the other kind carries the same names: out first
    try:
        _set(backend, kind, True)
    except BaseException:
        _set(backend, current, True)
        raise


def _set(backend, kind: str | None, registered: bool) -> None:
    if kind is None:
        return
    key = (backend.name, kind)
    if not registered:
        for creator in _CREATORS[key].values():
            backend.deregister_creator(creator)
        del _ACTIVE[backend.name]
        return
    if key in _CREATORS:
        for creator in _CREATORS[key].values():
            backend.register_creator(creator, NAMESPACE)
    else:
        _CREATORS[key] = _make_creators(backend, kind)
    _ACTIVE[backend.name] = kind


def active_kind(backend) -> str | None:
    return _ACTIVE.get(backend.name)


def plugin_stamps(kind: str = "python") -> list[PluginStamp]:
    from deploykit.plugins import aot, tensorrt_v3

    registration_file = tensorrt_v3.__file__ if kind == "python" else aot.__file__
    return [PluginStamp(name=spec.name, namespace=NAMESPACE, version=spec.plugin_version,
                        sha256=tensorrt_v3.source_hash(spec, registration_file)) for spec in PLUGIN_OPS.values()]


@contextlib.contextmanager
def plugins_registered(backend, kind: str | bool | None = "python") -> Iterator[None]:
    """Inside the block deploykit's plugins of `kind` are registered (None/False: none are); the previous state
    returns after. True means "python"."""
    kind = {True: "python", False: None}.get(kind, kind)
    before = active_kind(backend)
    activate(backend, kind)
    try:
        yield
    finally:
        activate(backend, before)
