"""Sources and dataset contracts, declared once in ``<data_dir>/pipelines.toml``.

A dataset is a contract (``core.ingest.Contract``); a source is where rows come from, how
often it is expected to deliver, and (for files) which datasets its inbox accepts::

    [datasets.hydrants]                  # a department's dataset
    table = "ds_hydrants"
    department = "cg"
    key = ["hydrant_id"]
    lon = "lon"; lat = "lat"; crs = "GCJ-02"
    jurisdiction = "point"               # or the name of a code column
    pattern = "hydrants*"                # files in the inbox whose name matches
    fields = [
      { name = "hydrant_id", type = "VARCHAR", required = true },
      { name = "lon", type = "DOUBLE", required = true, min = 73, max = 136 },
      { name = "lat", type = "DOUBLE", required = true, min = 3, max = 54 },
      { name = "status", type = "VARCHAR", choices = ["ok", "broken"] },
    ]

    [sources.inbox_cg]
    kind = "files"                       # files | mqtt | database | sensorthings
    seconds = 60                         # run (and expected) every 60 s
    department = "cg"                    # inbox: <data_dir>/inbox/cg/

The readings dataset (``core.ingest.READINGS``) is built in; a files inbox accepts it for
names matching ``readings*``.

>>> cfg = load_config(settings)                  # doctest: +SKIP
>>> sorted(cfg.sources)                          # doctest: +SKIP
['inbox_cg']
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.ingest import READINGS, Contract, ContractError, Field
from core.settings import Settings

__all__ = ["CONFIG_NAME", "ConfigError", "Dataset", "PipelineConfig", "SourceConfig",
           "load_config", "parse_config"]

CONFIG_NAME = "pipelines.toml"
SOURCE_KINDS = ("files", "mqtt", "database", "sensorthings")


class ConfigError(ValueError):
    """pipelines.toml is malformed; the message names the entry and the reason."""


@dataclass(frozen=True)
class Dataset:
    """A contract plus the file-name pattern that routes inbox files to it."""

    contract: Contract
    pattern: str


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineConfig:
    datasets: dict[str, Dataset]
    sources: dict[str, SourceConfig]


def _contract(name: str, spec: dict[str, Any]) -> Contract:
    try:
        fields = tuple(Field(f["name"], str(f["type"]).upper(), bool(f.get("required", False)),
                             f.get("min"), f.get("max"),
                             tuple(f["choices"]) if f.get("choices") else None)
                       for f in spec["fields"])
        return Contract(name, spec.get("table", f"ds_{name}"), fields, tuple(spec["key"]),
                        crs=spec.get("crs", "EPSG:4326"), lon=spec.get("lon"),
                        lat=spec.get("lat"), geometry=spec.get("geometry"),
                        jurisdiction=spec.get("jurisdiction"),
                        department=spec.get("department"),
                        description=spec.get("description", ""))
    except KeyError as exc:
        raise ConfigError(f"dataset {name}: missing {exc.args[0]}") from None
    except ContractError as exc:
        raise ConfigError(str(exc)) from None


def parse_config(data: dict[str, Any]) -> PipelineConfig:
    """Build the config from parsed TOML (a dict)."""
    datasets = {"readings": Dataset(READINGS, "readings*")}
    for name, spec in (data.get("datasets") or {}).items():
        datasets[name] = Dataset(_contract(name, spec), spec.get("pattern", f"{name}*"))
    sources = {}
    for name, spec in (data.get("sources") or {}).items():
        kind = spec.get("kind")
        if kind not in SOURCE_KINDS:
            raise ConfigError(f"source {name}: kind must be one of {', '.join(SOURCE_KINDS)}")
        seconds = float(spec.get("seconds", 60))
        if seconds <= 0:
            raise ConfigError(f"source {name}: seconds must be positive")
        ds = spec.get("dataset")
        if ds is not None and ds not in datasets:
            raise ConfigError(f"source {name}: unknown dataset {ds}")
        options = {k: v for k, v in spec.items() if k not in ("kind", "seconds")}
        sources[name] = SourceConfig(name, kind, seconds, options)
    return PipelineConfig(datasets, sources)


def load_config(settings: Settings, path: Path | None = None) -> PipelineConfig:
    """Read ``<data_dir>/pipelines.toml`` (absent: only the built-in readings dataset)."""
    path = path or Path(settings.data_dir) / CONFIG_NAME
    if not path.exists():
        return parse_config({})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse_config(data)
