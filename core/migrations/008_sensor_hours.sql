-- Which sensors reported in which hour (one row per (hour, sensor) with at least one reading):
-- distinct sensors over any time window and scope without scanning raw readings (the wall
-- screen's "sensors online at this time yesterday"). Kept by core.rollups like
-- readings_hourly: the load path stages pairs in sensor_hour_deltas (append only, no keys, so
-- concurrent loads never conflict) and refresh_rollups merges them.
CREATE TABLE sensor_hours (
    hour      TIMESTAMP NOT NULL,
    sensor_id INTEGER NOT NULL
);

CREATE TABLE sensor_hour_deltas (
    hour      TIMESTAMP NOT NULL,
    sensor_id INTEGER NOT NULL
);

-- fill from what is loaded already
INSERT INTO sensor_hours
SELECT DISTINCT date_trunc('hour', ts), sensor_id FROM readings ORDER BY 1, 2;
