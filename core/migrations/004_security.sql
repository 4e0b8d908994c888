-- Security: login lockout, second factor, session revocation; the data catalog and sharing.
-- Times are UTC, TIMESTAMP without zone.

ALTER TABLE users ADD COLUMN failed_logins INTEGER DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until TIMESTAMP;
ALTER TABLE users ADD COLUMN totp_secret VARCHAR;      -- base32; NULL while not enrolled
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;    -- last accepted time step: no replay
ALTER TABLE users ADD COLUMN session_epoch INTEGER DEFAULT 0;  -- bumped to end every session
ALTER TABLE users ADD COLUMN oidc_subject VARCHAR;     -- 'issuer|sub' of a single-sign-on user

-- A dataset = a table + contract + metadata (design §4). Secret is never shared.
CREATE TABLE datasets (
    id                  VARCHAR PRIMARY KEY,
    table_name          VARCHAR NOT NULL,
    name_zh             VARCHAR NOT NULL,
    name_en             VARCHAR NOT NULL,
    owner_department    VARCHAR NOT NULL,
    classification      VARCHAR NOT NULL
        CHECK (classification IN ('public','internal','sensitive','secret')),
    sharing             VARCHAR NOT NULL
        CHECK (sharing IN ('backflow','subscription','owner_only')),
    jurisdiction_column VARCHAR NOT NULL,
    columns             VARCHAR[] NOT NULL,
    sensitive_columns   VARCHAR[] NOT NULL,
    contract            VARCHAR,              -- JSON: types, required, ranges, key, CRS
    description         VARCHAR,
    created_at          TIMESTAMP NOT NULL,
    CHECK (classification <> 'secret' OR sharing = 'owner_only')
);

CREATE SEQUENCE subscription_seq START 1;

-- 按需订阅: a unit asks for a subtree and a set of columns until a date; the owning
-- department's dept_admin approves or refuses; either side may revoke.
CREATE TABLE subscriptions (
    id                   BIGINT PRIMARY KEY,
    dataset_id           VARCHAR NOT NULL,
    requester            VARCHAR NOT NULL,
    requester_department VARCHAR,
    scope_code           VARCHAR NOT NULL,     -- jurisdiction subtree asked for
    columns              VARCHAR[] NOT NULL,
    purpose              VARCHAR NOT NULL,
    until                TIMESTAMP NOT NULL,
    status               VARCHAR NOT NULL
        CHECK (status IN ('requested','approved','refused','revoked')),
    requested_at         TIMESTAMP NOT NULL,
    decided_at           TIMESTAMP,
    decided_by           VARCHAR,
    decision_note        VARCHAR,
    revoked_at           TIMESTAMP,
    revoked_by           VARCHAR
);

-- Every read of shared data: who, which dataset, how (backflow/subscription/owner), rows.
CREATE TABLE share_reads (
    ts          TIMESTAMP NOT NULL,
    username    VARCHAR NOT NULL,
    department  VARCHAR,
    dataset_id  VARCHAR NOT NULL,
    mode        VARCHAR NOT NULL,
    rows        BIGINT NOT NULL
);
