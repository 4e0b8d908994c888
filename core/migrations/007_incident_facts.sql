-- Incident facts (contract C2): what the event log says, kept on the incident itself so that
-- indicators read one table instead of scanning incident_events. Every transition and report
-- (core.incidents) maintains them in the same transaction as its event; the demo builder
-- fills them with the backfill below.
ALTER TABLE incidents ADD COLUMN first_dispatched_at TIMESTAMP;     -- first 'dispatch' event
ALTER TABLE incidents ADD COLUMN first_claimed_at TIMESTAMP;        -- first 'claim' event
ALTER TABLE incidents ADD COLUMN returned_count INTEGER DEFAULT 0;  -- 'return' events
ALTER TABLE incidents ADD COLUMN reopened_count INTEGER DEFAULT 0;  -- 'reopen' events
ALTER TABLE incidents ADD COLUMN supervised_count INTEGER DEFAULT 0; -- 'supervise' events

-- Backfill existing rows from the event log (the same statement as
-- core.incident_rules.BACKFILL_FACTS_SQL).
MERGE INTO incidents AS i
USING (
    SELECT incident_id,
           min(ts) FILTER (WHERE action = 'dispatch') AS first_dispatched_at,
           min(ts) FILTER (WHERE action = 'claim') AS first_claimed_at,
           count(*) FILTER (WHERE action = 'return') AS returned_count,
           count(*) FILTER (WHERE action = 'reopen') AS reopened_count,
           count(*) FILTER (WHERE action = 'supervise') AS supervised_count
    FROM incident_events GROUP BY incident_id
) AS f ON i.id = f.incident_id
WHEN MATCHED THEN UPDATE SET
    first_dispatched_at = f.first_dispatched_at,
    first_claimed_at = f.first_claimed_at,
    returned_count = f.returned_count,
    reopened_count = f.reopened_count,
    supervised_count = f.supervised_count;
UPDATE incidents SET returned_count = 0, reopened_count = 0, supervised_count = 0
WHERE returned_count IS NULL OR reopened_count IS NULL OR supervised_count IS NULL;
