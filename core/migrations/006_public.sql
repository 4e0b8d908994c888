-- Public participation (issue 8): citizen reports, Open311 API keys, photos, ratings.
-- Times are UTC, TIMESTAMP without zone. Secrets are stored only as SHA-256 hashes.

-- API keys of third-party Open311 clients: 'yw_<prefix>_<secret>'; only the hash is kept.
CREATE SEQUENCE public_api_key_seq START 1;
CREATE TABLE public_api_keys (
    id           INTEGER PRIMARY KEY DEFAULT nextval('public_api_key_seq'),
    name         VARCHAR   NOT NULL,
    prefix       VARCHAR   NOT NULL UNIQUE,
    key_hash     VARCHAR   NOT NULL,
    per_minute   INTEGER   NOT NULL CHECK (per_minute BETWEEN 1 AND 10000),
    created_by   VARCHAR   NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    revoked_at   TIMESTAMP
);

-- One row per incident reported through a public channel: how it came in and the hash of
-- the citizen's secret key (needed to rate; the tracking code alone only shows the timeline).
CREATE TABLE public_reports (
    incident_id   BIGINT    PRIMARY KEY,
    channel       VARCHAR   NOT NULL CHECK (channel IN ('web', 'open311', 'assisted')),
    key_hash      VARCHAR   NOT NULL,
    token         VARCHAR   NOT NULL UNIQUE,       -- Open311 token of the request
    api_key_id    INTEGER,                         -- open311: the client's key
    assisted_by   VARCHAR,                         -- 代办: the grid worker / social org user
    on_behalf_of  VARCHAR,                         -- 代办: who the report is for
    created_at    TIMESTAMP NOT NULL
);

-- Photos: re-encoded JPEG without any metadata, stored under <data_dir>/photos/.
CREATE TABLE public_photos (
    id           VARCHAR   PRIMARY KEY,            -- random hex; also the file name
    incident_id  BIGINT    NOT NULL,
    path         VARCHAR   NOT NULL,               -- relative to the photo folder
    width        INTEGER   NOT NULL,
    height       INTEGER   NOT NULL,
    bytes        INTEGER   NOT NULL,
    sha256       VARCHAR   NOT NULL,
    created_at   TIMESTAMP NOT NULL
);

-- Citizen ratings (回访), one per closure: a bad one (1–2) asks for a second follow-up.
CREATE TABLE public_ratings (
    incident_id  BIGINT    NOT NULL,
    closed_at    TIMESTAMP NOT NULL,               -- the closure that was rated
    rating       INTEGER   NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment      VARCHAR,
    rated_at     TIMESTAMP NOT NULL,
    reopened     BOOLEAN   NOT NULL,
    PRIMARY KEY (incident_id, closed_at)
);
