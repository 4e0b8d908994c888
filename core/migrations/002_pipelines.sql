-- Pipelines: runs, quarantine, sources and their freshness, rollups, alerts (contract A).
-- Times are UTC, TIMESTAMP without zone.

CREATE SEQUENCE ingest_run_seq START 1;
CREATE SEQUENCE quarantine_seq START 1;
CREATE SEQUENCE alert_seq START 1;

-- One row per run of a pipeline job (scheduled or by hand); written before the load starts
-- ('running') and finished after it, each in its own transaction, so that a crash mid-load
-- leaves a 'running' row and no partial data.
CREATE TABLE ingest_runs (
    id            BIGINT PRIMARY KEY,
    source        VARCHAR NOT NULL,
    trigger       VARCHAR NOT NULL DEFAULT 'schedule',   -- schedule | manual | reprocess
    started_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP,
    rows_in       BIGINT NOT NULL DEFAULT 0,
    rows_loaded   BIGINT NOT NULL DEFAULT 0,
    rows_rejected BIGINT NOT NULL DEFAULT 0,
    status        VARCHAR NOT NULL CHECK (status IN ('running','success','failed','missed')),
    error         VARCHAR
);

-- Rows that broke their dataset's contract: the raw row (JSON), why, and the run.
CREATE TABLE quarantine (
    id            BIGINT PRIMARY KEY,
    run_id        BIGINT NOT NULL,
    source        VARCHAR NOT NULL,
    contract      VARCHAR NOT NULL,
    raw           VARCHAR NOT NULL,
    reason        VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    status        VARCHAR NOT NULL DEFAULT 'open' CHECK (status IN ('open','reprocessed')),
    resolved_run_id BIGINT
);

-- Where an incremental source got to (database watermark, SensorThings phenomenonTime),
-- moved in the same transaction as the rows it covers.
CREATE TABLE pipeline_state (
    source     VARCHAR PRIMARY KEY,
    watermark  VARCHAR,
    updated_at TIMESTAMP NOT NULL
);

-- Every source the scheduler knows, with the interval it is expected to deliver at.
CREATE TABLE pipeline_sources (
    name             VARCHAR PRIMARY KEY,
    kind             VARCHAR NOT NULL,
    expected_seconds DOUBLE NOT NULL,
    description      VARCHAR
);

-- Stale when never successful, older than 2 × the expected interval, or the last run failed.
-- last_status is that of the last run that ran ('missed' skips do not count).
CREATE VIEW source_freshness AS
WITH last_run AS (
    SELECT source, arg_max(status, started_at) AS last_status
    FROM ingest_runs WHERE status IN ('success', 'failed') GROUP BY source
), last_ok AS (
    SELECT source, max(finished_at) AS last_success
    FROM ingest_runs WHERE status = 'success' GROUP BY source
)
SELECT s.name, s.kind, s.expected_seconds, o.last_success, r.last_status,
       (o.last_success IS NULL
        OR o.last_success < (now() AT TIME ZONE 'UTC')::TIMESTAMP
                            - to_microseconds(CAST(2e6 * s.expected_seconds AS BIGINT))
        OR coalesce(r.last_status = 'failed', false)) AS stale
FROM pipeline_sources s
LEFT JOIN last_run r ON r.source = s.name
LEFT JOIN last_ok o ON o.source = s.name;

-- Rollups: the dashboard reads these, never raw readings.
CREATE TABLE sensor_latest (
    sensor_id INTEGER PRIMARY KEY,
    ts        TIMESTAMP NOT NULL,
    value     DOUBLE NOT NULL,
    state     VARCHAR NOT NULL
);

CREATE VIEW sensor_status AS
SELECT s.id AS sensor_id, s.code, s.kind, s.name, s.lon, s.lat, s.jurisdiction_code,
       s.department_code, l.ts, l.value,
       CASE WHEN l.ts IS NULL
                 OR l.ts < (now() AT TIME ZONE 'UTC')::TIMESTAMP - INTERVAL 30 MINUTE
            THEN 'offline' ELSE l.state END AS state
FROM sensors s LEFT JOIN sensor_latest l ON l.sensor_id = s.id;

CREATE TABLE readings_hourly (
    hour              TIMESTAMP NOT NULL,
    kind              VARCHAR NOT NULL,
    jurisdiction_code VARCHAR NOT NULL,
    n                 BIGINT NOT NULL,
    total             DOUBLE NOT NULL,
    min_value         DOUBLE,
    max_value         DOUBLE,
    warn_n            BIGINT NOT NULL,
    alarm_n           BIGINT NOT NULL
    -- (hour, kind, jurisdiction_code) is unique by construction: only refresh_rollups writes
    -- here, replacing whole hours. No PRIMARY KEY: its index made the demo build's 1.5 M
    -- rollup rows take ~15 s to insert instead of well under one.
);

-- What the load path added since the last rollup refresh, already aggregated per hour, kind
-- and community (and each sensor's newest reading), written in the same transaction as the
-- readings themselves; refresh_rollups merges and deletes them in one transaction. No keys,
-- so concurrent loads only append and never conflict.
CREATE TABLE rollup_deltas (
    hour      TIMESTAMP NOT NULL,
    kind      VARCHAR NOT NULL,
    community VARCHAR NOT NULL,
    n         BIGINT NOT NULL,
    total     DOUBLE NOT NULL,
    min_value DOUBLE,
    max_value DOUBLE,
    warn_n    BIGINT NOT NULL,
    alarm_n   BIGINT NOT NULL
);

CREATE TABLE latest_deltas (
    sensor_id INTEGER NOT NULL,
    ts        TIMESTAMP NOT NULL,
    value     DOUBLE NOT NULL
);

CREATE TABLE rollup_state (
    name         VARCHAR PRIMARY KEY,
    refreshed_at TIMESTAMP NOT NULL
);

CREATE TABLE alerts (
    id                BIGINT PRIMARY KEY,
    rule_id           VARCHAR NOT NULL,
    sensor_id         INTEGER NOT NULL,
    kind              VARCHAR NOT NULL,
    jurisdiction_code VARCHAR NOT NULL,
    level             VARCHAR NOT NULL CHECK (level IN ('warning','alarm')),
    opened_at         TIMESTAMP NOT NULL,
    closed_at         TIMESTAMP,
    peak_value        DOUBLE,
    incident_id       BIGINT
);
