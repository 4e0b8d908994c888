"""Sources of rows, each behind one small interface: ``pull(store, settings, cfg, config)``
returns ``LoadStats`` and loads through ``core.ingest.load`` (the run id comes from
``pipelines.runner.current_run_id``).

| kind | module | what it pulls |
|---|---|---|
| files | ``files`` | an inbox folder per department: CSV, XLSX, JSON, Parquet, GeoJSON, GPKG, zipped Shapefile |
| mqtt | ``mqtt`` | JSON readings (single or batch) from topic patterns, QoS 1, manual acks after commit |
| database | ``database`` | a PostgreSQL or MySQL/MariaDB table through DuckDB's scanners, by watermark |
| sensorthings | ``sensorthings`` | Observations of an OGC SensorThings API server, by phenomenonTime |

>>> [job.id for job in source_jobs(settings)]          # doctest: +SKIP
['inbox_cg', 'mqtt_city']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from core.ingest import LoadStats
from core.settings import Settings
from core.store import Store
from pipelines.config import PipelineConfig, SourceConfig, load_config

__all__ = ["pull", "source_jobs"]

_MODULES = {"files": "pipelines.sources.files", "mqtt": "pipelines.sources.mqtt",
            "database": "pipelines.sources.database",
            "sensorthings": "pipelines.sources.sensorthings"}


def pull(store: Store, settings: Settings, cfg: SourceConfig,
         config: PipelineConfig) -> LoadStats:
    """Run one pull of a configured source."""
    module = importlib.import_module(_MODULES[cfg.kind])
    return module.pull(store, settings, cfg, config)


def _job_func(name: str) -> Callable[[Store, Settings], LoadStats]:
    def job(store: Store, settings: Settings) -> LoadStats:
        config = load_config(settings)        # re-read: a fixed contract applies next run
        return pull(store, settings, config.sources[name], config)

    job.__name__ = f"pull_{name}"
    return job


def source_jobs(settings: Settings) -> list:
    """One scheduler ``JobSpec`` per source declared in ``pipelines.toml``."""
    from pipelines.scheduler import JobSpec

    config = load_config(settings)
    return [JobSpec(cfg.name, _job_func(cfg.name), cfg.seconds,
                    cfg.options.get("description", f"{cfg.kind} source"), cfg.kind)
            for cfg in config.sources.values()]
