"""Registers deploykit's IPluginV3 creators (plugins/tensorrt_v3.py) with TensorRT's process-wide registry.

TensorRT keeps raw pointers to Python creators, so the creator objects live here for as long as they are
registered. `plugins_registered(backend, False)` takes them out again, which makes the ONNX parser fall
back to each node's model-local function body (the inlined reference path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from deploykit.build.manifest import PluginStamp
from deploykit.ops.contract import PLUGIN_OPS

_REGISTERED: dict[str, dict[str, object]] = {}  # backend name -> {op name: creator}


def register_plugins(backend) -> list[PluginStamp]:
    """Registers one creator per deploykit ONNX op and MoE stage op (idempotent); returns their stamps."""
    from deploykit.plugins import tensorrt_v3

    backend.fix_plugin_library()
    if backend.name not in _REGISTERED:
        creators = tensorrt_v3.make_creators(backend.trt)
        for creator in creators.values():
            backend.register_creator(creator, tensorrt_v3.NAMESPACE)
        _REGISTERED[backend.name] = creators
    return plugin_stamps()


def unregister_plugins(backend) -> None:
    for creator in _REGISTERED.pop(backend.name, {}).values():
        backend.deregister_creator(creator)


def is_registered(backend) -> bool:
    return backend.name in _REGISTERED


def plugin_stamps() -> list[PluginStamp]:
    from deploykit.plugins import tensorrt_v3

    return [PluginStamp(name=spec.name, namespace=tensorrt_v3.NAMESPACE, version=spec.plugin_version,
                        sha256=tensorrt_v3.source_hash(spec)) for spec in PLUGIN_OPS.values()]


@contextlib.contextmanager
def plugins_registered(backend, enabled: bool = True) -> Iterator[None]:
    """Inside the block deploykit's plugins are registered (enabled) or not; the previous state returns after."""
    before = is_registered(backend)
    (register_plugins if enabled else unregister_plugins)(backend)
    try:
        yield
    finally:
        if before and not is_registered(backend):
            register_plugins(backend)
        elif not before and is_registered(backend):
            unregister_plugins(backend)
