-- Foundation: jurisdictions, departments, users, sensors, readings, incidents, audit.
-- Times are UTC, stored as TIMESTAMP without zone. Geometry is WGS84 (EPSG:4326), lon/lat.

CREATE TABLE jurisdictions (
    code          VARCHAR PRIMARY KEY,
    parent_code   VARCHAR,
    level         VARCHAR NOT NULL CHECK (level IN ('province','city','district','street','community','grid')),
    depth         INTEGER NOT NULL,
    path          VARCHAR NOT NULL,        -- '/root/…/code/': a subtree is a path prefix
    name_zh       VARCHAR NOT NULL,
    name_en       VARCHAR,
    population    INTEGER,
    area_km2      DOUBLE,
    centroid_lon  DOUBLE,
    centroid_lat  DOUBLE,
    min_lon DOUBLE, min_lat DOUBLE, max_lon DOUBLE, max_lat DOUBLE,
    geom          GEOMETRY NOT NULL
);

CREATE TABLE departments (
    code              VARCHAR PRIMARY KEY,
    name_zh           VARCHAR NOT NULL,
    name_en           VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL CHECK (kind IN ('department','government','social_org','vendor','command')),
    jurisdiction_code VARCHAR NOT NULL
);

CREATE TABLE users (
    username            VARCHAR PRIMARY KEY,
    display_name        VARCHAR NOT NULL,
    role                VARCHAR NOT NULL,
    jurisdiction_code   VARCHAR,
    department_code     VARCHAR,
    password_hash       VARCHAR NOT NULL,
    active              BOOLEAN NOT NULL DEFAULT true,
    created_at          TIMESTAMP NOT NULL,
    password_changed_at TIMESTAMP NOT NULL,
    last_login_at       TIMESTAMP
);

CREATE TABLE sensor_kinds (
    kind            VARCHAR PRIMARY KEY,
    name_zh         VARCHAR NOT NULL,
    name_en         VARCHAR NOT NULL,
    unit            VARCHAR NOT NULL,
    department_code VARCHAR NOT NULL,
    warn            DOUBLE,
    alarm           DOUBLE
);

CREATE TABLE sensors (
    id                INTEGER PRIMARY KEY,
    code              VARCHAR NOT NULL UNIQUE,
    kind              VARCHAR NOT NULL,
    name              VARCHAR NOT NULL,
    lon               DOUBLE NOT NULL,
    lat               DOUBLE NOT NULL,
    jurisdiction_code VARCHAR NOT NULL,    -- the community it stands in
    department_code   VARCHAR NOT NULL,
    installed_at      TIMESTAMP NOT NULL
);

-- Append-only; no index so that bulk loads stay fast. Pipelines keep (sensor_id, ts) unique.
CREATE TABLE readings (
    sensor_id INTEGER   NOT NULL,
    ts        TIMESTAMP NOT NULL,
    value     DOUBLE    NOT NULL
);

CREATE TABLE incident_categories (
    code              VARCHAR PRIMARY KEY,
    name_zh           VARCHAR NOT NULL,
    name_en           VARCHAR NOT NULL,
    department_code   VARCHAR NOT NULL,
    default_priority  VARCHAR NOT NULL,
    claim_hours       DOUBLE NOT NULL,
    resolve_hours     DOUBLE NOT NULL,
    district_only     BOOLEAN NOT NULL DEFAULT false,   -- 负面清单: never sent below district
    social_help       BOOLEAN NOT NULL DEFAULT false    -- open to social organisations
);

CREATE TABLE incidents (
    id                BIGINT PRIMARY KEY,
    tracking_code     VARCHAR NOT NULL UNIQUE,
    category          VARCHAR NOT NULL,
    priority          VARCHAR NOT NULL CHECK (priority IN ('emergency','high','normal','low')),
    status            VARCHAR NOT NULL,
    source            VARCHAR NOT NULL,
    title             VARCHAR NOT NULL,
    description       VARCHAR,
    lon               DOUBLE NOT NULL,
    lat               DOUBLE NOT NULL,
    jurisdiction_code VARCHAR NOT NULL,
    department_code   VARCHAR,
    reported_at       TIMESTAMP NOT NULL,
    claim_due         TIMESTAMP,
    resolve_due       TIMESTAMP,
    claimed_at        TIMESTAMP,
    resolved_at       TIMESTAMP,
    closed_at         TIMESTAMP,
    rating            INTEGER,
    reporter_contact  VARCHAR
);

CREATE TABLE incident_events (
    incident_id     BIGINT    NOT NULL,
    seq             INTEGER   NOT NULL,
    ts              TIMESTAMP NOT NULL,
    action          VARCHAR   NOT NULL,
    from_status     VARCHAR,
    to_status       VARCHAR   NOT NULL,
    actor           VARCHAR   NOT NULL,
    department_code VARCHAR,
    note            VARCHAR
);

-- Append-only, hash-chained: hash = sha256(prev_hash || canonical entry).
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    ts         TIMESTAMP NOT NULL,
    actor      VARCHAR NOT NULL,
    action     VARCHAR NOT NULL,
    target     VARCHAR,
    detail     VARCHAR,
    prev_hash  VARCHAR NOT NULL,
    hash       VARCHAR NOT NULL
);
