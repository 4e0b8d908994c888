-- Incident coordination (issue 6, design §5): routing rules, SLA caps per priority, joint
-- handling (co-department tasks), deadline extensions, in-app notifications.
-- Times are UTC, TIMESTAMP without zone.

-- State the state machine keeps on the incident itself.
ALTER TABLE incidents ADD COLUMN version INTEGER DEFAULT 0;        -- bumped by every transition
ALTER TABLE incidents ADD COLUMN overdue_kind VARCHAR;             -- NULL | 'claim' | 'resolve'
ALTER TABLE incidents ADD COLUMN escalated_at TIMESTAMP;           -- last automatic escalation
ALTER TABLE incidents ADD COLUMN supervised_at TIMESTAMP;          -- last 督办 while open
ALTER TABLE incidents ADD COLUMN merged_into BIGINT;               -- closed as a duplicate of

-- (category, jurisdiction subtree) → department. category NULL matches every category.
-- The most specific rule wins: deepest jurisdiction first, then a named category, then rank.
-- Explicit rules dispatch at once; without a matching rule the incident waits for the
-- commander with the category's department (or the district government, 兜底) suggested.
CREATE SEQUENCE incident_routing_rule_seq START 1;
CREATE TABLE incident_routing_rules (
    id                INTEGER PRIMARY KEY DEFAULT nextval('incident_routing_rule_seq'),
    category          VARCHAR,
    jurisdiction_code VARCHAR NOT NULL,
    department_code   VARCHAR NOT NULL,
    rank              INTEGER NOT NULL DEFAULT 0,
    auto_dispatch     BOOLEAN NOT NULL DEFAULT true,
    note              VARCHAR
);

-- A priority can shorten a category's deadlines (never lengthen them): the deadline is
-- min(category hours, cap). NULL caps leave the category's hours.
CREATE TABLE incident_priority_sla (
    priority          VARCHAR PRIMARY KEY,
    claim_hours_max   DOUBLE,
    resolve_hours_max DOUBLE
);
INSERT INTO incident_priority_sla VALUES
    ('emergency', 0.5, 2.0),
    ('high', NULL, NULL),
    ('normal', NULL, NULL),
    ('low', NULL, NULL);

-- 协办: one task per co-department; the incident resolves only when every task is done.
CREATE TABLE incident_co_tasks (
    incident_id     BIGINT    NOT NULL,
    department_code VARCHAR   NOT NULL,
    status          VARCHAR   NOT NULL CHECK (status IN ('pending','done')),
    requested_at    TIMESTAMP NOT NULL,
    requested_by    VARCHAR   NOT NULL,
    instruction     VARCHAR,
    done_at         TIMESTAMP,
    done_by         VARCHAR,
    result          VARCHAR,
    PRIMARY KEY (incident_id, department_code)
);

-- 延期: the resolve deadline moves only when approved.
CREATE SEQUENCE incident_extension_seq START 1;
CREATE TABLE incident_extensions (
    id              BIGINT PRIMARY KEY DEFAULT nextval('incident_extension_seq'),
    incident_id     BIGINT    NOT NULL,
    department_code VARCHAR   NOT NULL,
    requested_by    VARCHAR   NOT NULL,
    requested_at    TIMESTAMP NOT NULL,
    hours           DOUBLE    NOT NULL CHECK (hours > 0),
    reason          VARCHAR   NOT NULL,
    status          VARCHAR   NOT NULL CHECK (status IN ('pending','approved','rejected')),
    decided_by      VARCHAR,
    decided_at      TIMESTAMP,
    decision_note   VARCHAR
);

-- In-app notifications, one row per recipient user (fanned out when created).
CREATE SEQUENCE incident_notification_seq START 1;
CREATE TABLE incident_notifications (
    id          BIGINT PRIMARY KEY DEFAULT nextval('incident_notification_seq'),
    username    VARCHAR   NOT NULL,
    incident_id BIGINT    NOT NULL,
    kind        VARCHAR   NOT NULL,     -- dispatch | co_request | escalate | supervise | extension
    created_at  TIMESTAMP NOT NULL,
    message     VARCHAR   NOT NULL,
    read_at     TIMESTAMP
);
