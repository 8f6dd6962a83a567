"""GPU profiles (profiles/gpus/*.yaml), planner constants (profiles/gpus/_planner.yaml) and hardware rules."""

from __future__ import annotations

from functools import lru_cache

import yaml
from pydantic import BaseModel, ConfigDict, Field

from deploykit.resources import profiles_dir

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FP8_MIN_SM = 8.9  # FP8 tensor cores from Ada (SM 8.9) upward (gpus.md, compute capability notes)
INT4_MIN_SM = 8.0  # weight-only INT4 GEMM kernels (AWQ/GPTQ in TensorRT-LLM / vLLM Marlin) need Ampere (issue 2, item 5)


class GpuProfile(BaseModel):
    """One GPU kind: dense peak rates (TFLOPS), memory and links, as in ../shared/reference/gpus.yaml."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    family: str
    aliases: list[str] = Field(default_factory=list)
    vendor: str
    memory_gb: float
    usable_gib: float
    memory_bandwidth_tbs: float
    bf16_tflops: float | None = None
    fp16_tflops: float | None = None
    fp8_tflops: float | None = None
    has_fp8_tensor_cores: bool = False
    sm: str
    nvlink_gbs: float | None = None
    pcie_gen: int | None = None
    unified_memory: bool = False
    tensorrt_supported: bool = True
    measured_bf16_gemm_tflops: float | None = None
    interconnect: str = ""
    form_factor: str = ""
    sources: list[str] = Field(default_factory=list)
    approx: list[str] = Field(default_factory=list)

    @property
    def sm_version(self) -> float | None:
        """Compute capability as a number; None for AMD (gfx) parts."""
        try:
            return float(self.sm)
        except ValueError:
            return None

    @property
    def short(self) -> str:
        return self.name.removeprefix("NVIDIA ").removeprefix("AMD ")


@lru_cache(maxsize=1)
def gpu_profiles() -> tuple[GpuProfile, ...]:
    folder = profiles_dir() / "gpus"
    return tuple(
        GpuProfile.model_validate(yaml.load(p.read_text(), Loader=_YAML_LOADER))
        for p in sorted(folder.glob("*.yaml"))
        if not p.name.startswith("_")
    )


@lru_cache(maxsize=1)
def planner_constants() -> dict:
    return yaml.load((profiles_dir() / "gpus" / "_planner.yaml").read_text(), Loader=_YAML_LOADER)


@lru_cache(maxsize=1)
def alias_defaults() -> dict[str, str]:
    doc = yaml.load((profiles_dir() / "gpus" / "_conventions.yaml").read_text(), Loader=_YAML_LOADER)
    return dict(doc["aliases_default"])


def runtime(name: str):
    """A runtime constant's value from _planner.yaml."""
    return planner_constants()["runtime"][name]["value"]


def efficiency(gpu: GpuProfile) -> dict:
    """bandwidth / compute_bf16 / compute_fp8 factors of the GPU's family; a measured GEMM overrides compute_bf16
    (measured / dense peak)."""
    table = planner_constants()["efficiency"]
    eff = dict(table.get(gpu.family, table["default"]))
    if gpu.measured_bf16_gemm_tflops and gpu.bf16_tflops:
        # may exceed 1: the RTX 5090 spec is at the reference boost clock, real clocks run ~15 % higher (gpus.md)
        eff["compute_bf16"] = gpu.measured_bf16_gemm_tflops / gpu.bf16_tflops
        eff["source"] = f"measured BF16 GEMM {gpu.measured_bf16_gemm_tflops} of {gpu.bf16_tflops} TFLOPS; " + eff["source"]
    return eff


def link_gbs(gpu: GpuProfile) -> tuple[float, str]:
    """Per-direction GB/s between GPUs of one model instance, and the link kind.

    NVLink counts for SXM-class modules (NVSwitch baseboards; V100 SXM2's hybrid cube mesh is taken as NVLink too,
    an optimistic figure for tp > 4 there); bridged PCIe cards (A100/H100 PCIe, H100 NVL) bridge pairs only, so
    they are planned over PCIe.
    """
    if gpu.nvlink_gbs and "PCIe" not in gpu.form_factor:
        return gpu.nvlink_gbs / 2, "nvlink"
    fabric = getattr(gpu, "infinity_fabric_gbs", None)  # AMD: aggregate peer GB/s, both directions (gpus.md)
    if fabric:
        return float(fabric) / 2, "infinity-fabric"
    pcie = planner_constants()["runtime"]["pcie_gbs_per_direction"]
    return float(pcie.get(str(gpu.pcie_gen or 4), 32)), "pcie"


def precision_support(gpu: GpuProfile, precision: str) -> tuple[bool, str | None]:
    """(supported, why not + alternative) for weights in `precision` on this GPU under TensorRT."""
    sm = gpu.sm_version
    if precision == "fp8":
        ok = gpu.has_fp8_tensor_cores and (sm is None or sm >= FP8_MIN_SM)
        if ok:
            return True, None
        alt = "int4 (weight-only) or bf16" if sm is not None and sm >= INT4_MIN_SM else "bf16 (as fp16)"
        return False, f"fp8 needs FP8 tensor cores (SM >= {FP8_MIN_SM}), {gpu.short} is SM {gpu.sm}: use {alt}"
    if precision == "int4":
        if sm is None or sm >= INT4_MIN_SM:
            return True, None
        return False, f"int4 weight-only needs SM >= {INT4_MIN_SM}, {gpu.short} is SM {gpu.sm}: use bf16 (as fp16)"
    return True, None


def kv_support(gpu: GpuProfile, kv_dtype: str) -> tuple[bool, str | None]:
    if kv_dtype == "fp8" and not precision_support(gpu, "fp8")[0]:
        return False, f"fp8 KV cache needs SM >= {FP8_MIN_SM}, {gpu.short} is SM {gpu.sm}: use --kv-dtype bf16"
    return True, None


def hardware_notes(gpu: GpuProfile) -> list[str]:
    """Caveats that do not stop a plan but change how it is run."""
    notes = []
    if gpu.vendor != "NVIDIA":
        notes.append(f"{gpu.short} is not a TensorRT target: estimate assumes vLLM/SGLang on ROCm")
    elif not gpu.tensorrt_supported:
        notes.append(f"{gpu.short}: TensorRT no longer targets Volta (removed in 10.5); estimate assumes another runtime")
    if not gpu.bf16_tflops:
        notes.append(f"{gpu.short} has no bf16 tensor cores: 16-bit weights run as fp16 (overflow risk for a bf16-trained model)")
    if gpu.unified_memory:
        notes.append(f"{gpu.short} shares memory with the OS: {runtime('unified_memory_os_reserve_gib')} GiB reserved by default")
    if gpu.family in ("orin", "thor"):  # published-vs-measured gaps on Jetson come from clocks: anchors.md c5 (Edge-LLM#95)
        notes.append(f"{gpu.short}: speeds assume MAXN clocks (sudo nvpmodel -m 0 && sudo jetson_clocks)")
    return notes


def compute_tflops(gpu: GpuProfile, precision: str) -> float:
    """Dense peak for the GEMMs of `precision` (int4 is weight-only: bf16 math after dequantisation)."""
    if precision == "fp8" and gpu.fp8_tflops:
        return gpu.fp8_tflops
    return gpu.bf16_tflops or gpu.fp16_tflops or 0.0
