"""Retry quarantined rows after their contract or data was fixed (`yiwang pipelines reprocess`).

Each open entry's raw row goes through ``core.ingest.load`` again against the contract as it
is declared NOW: rows that pass are loaded and their entries marked 'reprocessed'; rows that
still fail stay open with the new reason. Raw inputs that never were rows (e.g. an MQTT
payload that is not JSON) stay open as they are.

>>> reprocess(store, settings)            # doctest: +SKIP
{'readings': LoadStats(rows_in=3, loaded=2, rejected=1)}
"""

from __future__ import annotations

import json

import pyarrow as pa

from core.ingest import LoadStats, load
from core.rollups import refresh_rollups
from core.settings import Settings
from core.store import Store
from pipelines.config import PipelineConfig, load_config
from pipelines.runner import current_run_id, execute

__all__ = ["reprocess"]


def _rows(entries: list[tuple[int, str]]) -> tuple[pa.Table, pa.Array] | None:
    ids, rows = [], []
    for qid, raw in entries:
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        if isinstance(row, dict):
            ids.append(qid)
            rows.append({k: None if v is None else v if isinstance(v, str) else
                         json.dumps(v) for k, v in row.items()})
    if not rows:
        return None
    names = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({n: pa.array([r.get(n) for r in rows], type=pa.string()) for n in names})
    return table, pa.array(ids, type=pa.int64())


def reprocess(store: Store, settings: Settings, contract: str | None = None,
              config: PipelineConfig | None = None) -> dict[str, LoadStats]:
    """Retry every open quarantine entry (of one contract, or all) as one recorded run."""
    config = config or load_config(settings)
    names = [r[0] for r in store.query(
        "SELECT DISTINCT contract FROM quarantine WHERE status = 'open' ORDER BY 1")]
    if contract is not None:
        names = [n for n in names if n == contract]
    out: dict[str, LoadStats] = {}

    def work() -> LoadStats:
        total = LoadStats()
        for name in names:
            dataset = config.datasets.get(name)
            if dataset is None:
                continue
            entries = store.query("SELECT id, raw FROM quarantine WHERE status = 'open'"
                                  " AND contract = ? ORDER BY id", [name])
            parsed = _rows(entries)
            if parsed is None:
                continue
            table, ids = parsed
            stats = load(store, dataset.contract, table, run_id=current_run_id(),
                         source="reprocess", quarantine_ids=ids)
            out[name] = stats
            total += stats
            if dataset.contract.table == "readings" and stats.loaded:
                refresh_rollups(store)
        return total

    execute(store, "reprocess", work, trigger="reprocess")
    return out
