"""The one place that imports TensorRT.

deploykit builds with either flavour of NVIDIA's builder, through the API they share:
  * "tensorrt"      - datacenter TensorRT (`import tensorrt`): H100/H200, A100, L40S, Jetson. It builds for
                      the GPU it runs on, so it needs one.
  * "tensorrt-rtx"  - TensorRT for RTX (`import tensorrt_rtx_bindings`): RTX 30/40/50, RTX 6000 Ada,
                      RTX PRO 6000. Its ONNX parser and builder run without a GPU and build ahead of time
                      for the compute capabilities we name.
Everything that differs between them (module name, network flags, compute-capability targets, the
plugin-library fix, plugin registration) lives here; the rest of deploykit/build/ and
plugins/tensorrt_v3.py only call `Backend` methods and the common API on `Backend.trt`.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType

from deploykit.errors import DeployKitError

# Backend name -> Python module. Order = preference of backend="auto": datacenter TensorRT where it is
# installed (a GPU machine), else TensorRT for RTX (installable everywhere, builds without a GPU).
MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx_bindings"}
EXTRAS = {"tensorrt-rtx": "tensorrt-rtx", "tensorrt": "tensorrt"}

# Compute capabilities TensorRT for RTX 1.7 accepts in `set_compute_capability`
# (ComputeCapability enum of tensorrt_rtx_bindings 1.7.1; SM75 is listed but SM 7.5 builds are not our target,
# and there is no SM 9.0: Hopper is datacenter TensorRT's). Source: shared/reference/tensorrt-rtx.md.
RTX_TARGETS = ("sm75", "sm80", "sm86", "sm89", "sm120", "sm121")
RTX_DEFAULT_TARGET = "sm89"  # Ada: RTX 4090 / RTX 6000 Ada / L40S, the most common RTX-class target


@dataclass
class TrtLog:
    """Messages TensorRT logged, kept so that errors become one line and the rest stays available."""

    entries: list[tuple[str, str]] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [m for sev, m in self.entries if sev in ("ERROR", "INTERNAL_ERROR")]


@dataclass(frozen=True)
class Backend:
    """A loaded TensorRT flavour and the few calls in which the flavours differ."""

    name: str  # "tensorrt" or "tensorrt-rtx"
    trt: ModuleType

    @property
    def version(self) -> str:
        return str(self.trt.__version__)

    @property
    def is_rtx(self) -> bool:
        return self.name == "tensorrt-rtx"

    def logger(self, log: TrtLog):
        """An ILogger that records messages instead of printing them (errors are re-raised as one line)."""
        trt = self.trt

        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                log.entries.append((severity.name, msg))
                if os.environ.get("DEPLOYKIT_DEBUG") == "1":
                    print(f"[TensorRT {severity.name}] {msg}", file=sys.stderr)

        return _Logger()

    def create_network(self, builder):
        """Strongly typed on both: the ONNX dtypes decide precisions (quantization only as Q/DQ)."""
        flags = self.trt.NetworkDefinitionCreationFlag
        if self.is_rtx or not hasattr(flags, "STRONGLY_TYPED"):  # RTX: strongly typed is the only mode
            return builder.create_network(0)
        return builder.create_network(1 << int(flags.STRONGLY_TYPED))

    def set_targets(self, config, targets: list[str]) -> list[str]:
        """Point the build at compute capabilities; returns the names written into the manifest."""
        targets = [normalize_target(t) for t in targets]
        if not self.is_rtx:
            return self._datacenter_target(targets)
        targets = targets or [RTX_DEFAULT_TARGET]
        bad = [t for t in targets if t not in RTX_TARGETS]
        if bad:
            raise DeployKitError(
                f"TensorRT for RTX cannot build for {', '.join(bad)}",
                f"choose from {', '.join(RTX_TARGETS)} (Hopper sm90 and Jetson need datacenter TensorRT)",
            )
        config.num_compute_capabilities = len(targets)
        for i, t in enumerate(targets):
            config.set_compute_capability(getattr(self.trt.ComputeCapability, t.upper()), i)
        return targets

    def _datacenter_target(self, targets: list[str]) -> list[str]:
        # Datacenter TensorRT builds for the GPU in this machine (hardware-compatibility levels aside).
        local = _local_gpu_target()
        if local is None:
            raise DeployKitError("datacenter TensorRT builds for the local GPU, and none was found",
                                 "run on the target GPU, or use --backend tensorrt-rtx for RTX GPUs")
        if targets and targets != [local]:
            raise DeployKitError(f"datacenter TensorRT builds for this machine's GPU ({local}), not {targets}",
                                 f"pass --target {local} or run on a {targets[0]} machine")
        return [local]

    def fix_plugin_library(self) -> None:
        """TensorRT for RTX's parser dlopens the unversioned libtensorrt_rtx.so when it adds a plugin
        layer, but the wheel ships only libtensorrt_rtx.so.1; without this symlink the process aborts
        (shared/reference/tensorrt-rtx.md). NVIDIA's TensorRT-RTX ONNX Runtime add-on does the same."""
        if not self.is_rtx:
            return
        libs = importlib.import_module("tensorrt_rtx_libs")
        folder = os.path.dirname(libs.__file__)
        link = os.path.join(folder, "libtensorrt_rtx.so")
        if os.path.exists(link):
            return
        tmp = f"{link}.{os.getpid()}.tmp"
        try:
            os.symlink("libtensorrt_rtx.so.1", tmp)
            os.replace(tmp, link)  # atomic: parallel test processes may race here
        except OSError as exc:
            raise DeployKitError(f"cannot create {link} ({exc.strerror})",
                                 f"run once: ln -s libtensorrt_rtx.so.1 {link}") from exc

    def register_creator(self, creator, namespace: str) -> None:
        if not self.trt.get_plugin_registry().register_creator(creator, namespace):
            raise RuntimeError(f"TensorRT refused plugin creator {namespace}::{creator.name}")

    def deregister_creator(self, creator) -> None:
        self.trt.get_plugin_registry().deregister_creator(creator)


def normalize_target(target: str) -> str:
    """'sm89', 'sm_89', '8.9' -> 'sm89'."""
    t = target.strip().lower().replace("_", "")
    if t.replace(".", "").isdigit() and "." in t:
        major, minor = t.split(".")
        t = f"sm{major}{minor}"
    if not (t.startswith("sm") and t[2:].isdigit()):
        raise DeployKitError(f"unknown target '{target}'", "write a compute capability like sm89 or sm_120")
    return t


def _local_gpu_target() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return f"sm{major}{minor}"


_LOADED: dict[str, Backend] = {}


def load_backend(name: str = "auto") -> Backend:
    """Import the requested TensorRT flavour ("auto": whichever is installed, RTX first)."""
    if name in _LOADED:
        return _LOADED[name]
    if name not in ("auto", *MODULES):
        raise DeployKitError(f"unknown backend '{name}'", f"choose from auto, {', '.join(MODULES)}")
    for candidate in (MODULES if name == "auto" else [name]):
        try:
            module = importlib.import_module(MODULES[candidate])
        except ImportError:
            continue
        _LOADED[name] = Backend(candidate, module)
        return _LOADED[name]
    if name == "auto":
        raise DeployKitError("neither TensorRT nor TensorRT for RTX is installed",
                             "pip install 'deploykit[tensorrt-rtx]' (no GPU needed) or 'deploykit[tensorrt]'")
    raise DeployKitError(f"backend '{name}' needs the Python module '{MODULES[name]}', which is not installed",
                         f"pip install 'deploykit[{EXTRAS[name]}]'")
