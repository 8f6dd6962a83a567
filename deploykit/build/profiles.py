"""Optimization profiles: the (min, opt, max) shape ranges an engine accepts, for prefill and decode.

A profile is given in the model's three runtime quantities (batch, new tokens, past length), which is what
the planner decides; `input_shapes` turns it into per-input ranges by reading each ONNX input's symbolic
dimension names. Known names are listed in DIM_ROLES; "total" (past + tokens, e.g. an attention mask) and
"flat" (batch x tokens) are derived.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from deploykit.errors import DeployKitError

# Symbolic dim names the exporter may give each runtime quantity (its dynamic_shapes names, lower-cased).
DIM_ROLES: dict[str, tuple[str, ...]] = {
    "batch": ("b", "batch", "batch_size"),
    "tokens": ("t", "tokens", "seq", "seq_len", "sequence_length", "num_tokens", "new_tokens"),
    "past": ("p", "past", "past_len", "past_length", "past_sequence_length", "cache_len"),
    "total": ("total", "total_len", "total_length", "total_sequence_length", "kv_len", "p+t", "past+tokens",
              "tokens+past", "t+p"),
    "flat": ("n", "tokens_flat", "flat_tokens", "batch_tokens", "b*t", "batch*tokens"),
}


class DimRange(BaseModel):
    model_config = ConfigDict(frozen=True)

    min: int
    opt: int
    max: int

    @model_validator(mode="after")
    def _ordered(self) -> DimRange:
        if not 0 <= self.min <= self.opt <= self.max:
            raise ValueError(f"need 0 <= min <= opt <= max, got {self.min}, {self.opt}, {self.max}")
        return self

    def __add__(self, other: DimRange) -> DimRange:
        return DimRange(min=self.min + other.min, opt=self.opt + other.opt, max=self.max + other.max)

    def __mul__(self, other: DimRange) -> DimRange:
        return DimRange(min=self.min * other.min, opt=self.opt * other.opt, max=self.max * other.max)


class ProfileSpec(BaseModel):
    """One optimization profile in the model's runtime quantities."""

    model_config = ConfigDict(frozen=True)

    name: str
    batch: DimRange
    tokens: DimRange
    past: DimRange

    def role(self, role: str) -> DimRange:
        if role == "total":  # e.g. an attention mask over past and new tokens
            return self.past + self.tokens
        if role == "flat":  # batch and time flattened, e.g. MoE's N = B*T
            return self.batch * self.tokens
        return getattr(self, role)


def default_profiles(max_batch: int = 1, max_tokens: int = 128, max_past: int = 1024,
                     opt_batch: int | None = None, opt_tokens: int | None = None,
                     opt_past: int | None = None) -> list[ProfileSpec]:
    """prefill: 1..max_tokens new tokens on an empty or partly filled cache; decode: one token, any past.

    TensorRT picks the profile per execution context; two profiles let decode get kernels tuned for T=1.
    """
    for name, value in (("max_batch", max_batch), ("max_tokens", max_tokens), ("max_past", max_past)):
        if value < (0 if name == "max_past" else 1):
            raise DeployKitError(f"{name} must be positive, got {value}", f"pass --{name.replace('_', '-')} >= 1")
    ob = opt_batch or max_batch
    prefill = ProfileSpec(
        name="prefill",
        batch=DimRange(min=1, opt=ob, max=max_batch),
        tokens=DimRange(min=1, opt=opt_tokens or max_tokens, max=max_tokens),
        past=DimRange(min=0, opt=0 if opt_past is None else opt_past, max=max_past),
    )
    decode = ProfileSpec(
        name="decode",
        batch=DimRange(min=1, opt=ob, max=max_batch),
        tokens=DimRange(min=1, opt=1, max=1),
        past=DimRange(min=0, opt=max_past // 2 if opt_past is None else opt_past, max=max_past),
    )
    return [prefill, decode]


def role_of(dim_name: str, extra: dict[str, str] | None = None) -> str | None:
    """The runtime quantity a symbolic dim stands for; `extra` maps further names (e.g. torch's 's53')."""
    if extra and dim_name in extra:
        return extra[dim_name]
    key = dim_name.strip().lower().replace(" ", "")
    for role, names in DIM_ROLES.items():
        if key in names:
            return role
    return None


def input_shapes(profile: ProfileSpec, inputs: list[tuple[str, tuple]],
                 dim_roles: dict[str, str] | None = None) -> dict[str, tuple[tuple, tuple, tuple]]:
    """{input name: (min, opt, max) shapes} for inputs given as (name, dims); dims are ints or dim names."""
    bad = {k: v for k, v in (dim_roles or {}).items() if v not in DIM_ROLES}
    if bad:
        raise DeployKitError(f"unknown dimension roles {bad}", f"use one of {', '.join(DIM_ROLES)}")
    out = {}
    for name, dims in inputs:
        lo, mid, hi = [], [], []
        for d in dims:
            if isinstance(d, int) and d >= 0:
                r = DimRange(min=d, opt=d, max=d)
            else:
                role = role_of(str(d), dim_roles)
                if role is None:
                    raise DeployKitError(f"input '{name}' has a dynamic dimension '{d}' that deploykit cannot size",
                                         f"pass --dim {d}=ROLE with ROLE one of {', '.join(DIM_ROLES)}, "
                                         "or name the dimension when exporting")
                r = profile.role(role)
            lo.append(r.min), mid.append(r.opt), hi.append(r.max)
        out[name] = (tuple(lo), tuple(mid), tuple(hi))
    return out
