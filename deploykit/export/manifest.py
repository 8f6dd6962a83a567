"""OUT/deploykit.json: what an export is, so a builder or validator can trust (or reject) it.

Written last, inside the temporary output directory that is renamed into place: a directory with a
deploykit.json is a complete export.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

MANIFEST_NAME = "deploykit.json"
MANIFEST_SCHEMA_VERSION = 1


class TensorIO(BaseModel):
    name: str
    dtype: str
    shape: list[int | str]


class FileHash(BaseModel):
    name: str
    size: int
    sha256: str


class OpVersion(BaseModel):
    name: str
    domain: str
    version: int
    plugin_version: str
    nodes: int


class Readiness(BaseModel):
    nodes_checked: int
    parser_ops_source: str
    not_ready: list[str]


class Manifest(BaseModel):
    schema_version: int = MANIFEST_SCHEMA_VERSION
    deploykit_version: str
    model: str  # catalog alias or checkpoint path as given
    checkpoint_dir: str | None  # resolved checkpoint directory (None for --random-weights)
    architecture: str  # transformers class the config describes
    config: dict
    config_hash: str
    checkpoint_files: list[FileHash]  # empty for --random-weights
    random_weights: bool
    seed: int | None
    layers: int
    dtype: str
    decompose: bool
    opset: int
    domains: dict[str, int]
    ops: list[OpVersion]
    inputs: list[TensorIO]
    outputs: list[TensorIO]
    files: list[str]
    readiness: Readiness
    tools: dict[str, str]

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / MANIFEST_NAME
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def read(cls, out_dir: Path) -> Manifest:
        from deploykit.errors import DeployKitError

        path = Path(out_dir) / MANIFEST_NAME
        if not path.is_file():
            raise DeployKitError(
                f"{out_dir} has no {MANIFEST_NAME}, so it is not a complete deploykit export",
                "run `deploykit export MODEL -o DIR` first",
            )
        from pydantic import ValidationError

        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "the file"
            raise DeployKitError(f"{path} is not a valid deploykit export manifest ({where}: {first['msg']})",
                                 "re-export with `deploykit export`") from None


def config_hash(config: dict) -> str:
    """sha256 of the canonical JSON of the config (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_sha256(path: Path, chunk: int = 16 << 20) -> FileHash:
    """Hash in 16 MiB chunks so multi-GB checkpoints never sit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return FileHash(name=Path(path).name, size=Path(path).stat().st_size, sha256=h.hexdigest())
