"""TensorRT engine builder: exported ONNX -> engine + manifest, for datacenter TensorRT or TensorRT for RTX.

Only deploykit/build/trt_backend.py imports TensorRT; importing this package imports neither TensorRT nor
torch, so `deploykit plan` stays light.
"""

from __future__ import annotations

__all__ = ["BuildOptions", "DimRange", "ProfileSpec", "build_engine", "default_profiles", "load_backend",
           "parse_onnx", "verify_manifest"]


def __getattr__(name: str):
    if name in ("BuildOptions", "build_engine", "parse_onnx"):
        from deploykit.build import builder

        return getattr(builder, name)
    if name in ("ProfileSpec", "DimRange", "default_profiles"):
        from deploykit.build import profiles

        return getattr(profiles, name)
    if name == "verify_manifest":
        from deploykit.build.manifest import verify_manifest

        return verify_manifest
    if name == "load_backend":
        from deploykit.build.trt_backend import load_backend

        return load_backend
    raise AttributeError(name)
