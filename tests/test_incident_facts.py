"""Contract C2: the incident fact columns (first_dispatched_at, first_claimed_at,
returned_count, reopened_count, supervised_count) always say what incident_events says —
after a random walk through the state machine, after the migration's backfill, and in the
demo city."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from test_incident_machine import T0, city, incident_city_template, user  # noqa: F401

from core.incident_views import get_incident
from core.incidents import (
    BACKFILL_FACTS_SQL,
    FACT_COLUMNS,
    TransitionRefused,
    allowed_actions,
    report_incident,
    transition,
)
from core.store import Store

FROM_EVENTS = """
SELECT i.id,
       (SELECT min(ts) FROM incident_events e WHERE e.incident_id = i.id AND action = 'dispatch'),
       (SELECT min(ts) FROM incident_events e WHERE e.incident_id = i.id AND action = 'claim'),
       (SELECT count(*) FROM incident_events e WHERE e.incident_id = i.id AND action = 'return'),
       (SELECT count(*) FROM incident_events e WHERE e.incident_id = i.id AND action = 'reopen'),
       (SELECT count(*) FROM incident_events e WHERE e.incident_id = i.id
          AND action = 'supervise')
FROM incidents i ORDER BY i.id
"""
ON_INCIDENTS = "SELECT id, " + ", ".join(FACT_COLUMNS) + " FROM incidents ORDER BY id"


_WEIGHTS = {"supervise": 1, "return": 1, "transfer": 1, "co_request": 2, "verify_failed": 2,
            "request_extension": 1, "reject_extension": 1}


def _fields(rng: random.Random, action: str, inc) -> dict:
    other = "sw" if inc.department_code != "sw" else "cg"
    return {
        "dispatch": lambda: rng.choice([{}, {"department": other, "reason": "改派"}]),
        "transfer": lambda: {"department": other},
        "co_request": lambda: {"department": other},
        "request_extension": lambda: {"hours": rng.choice([4, 24])},
        "rate": lambda: {"rating": rng.randint(1, 5)},
    }.get(action, dict)()


def _walk(store: Store, seed: int, incidents: int = 5, steps: int = 200) -> dict[str, int]:
    rng = random.Random(seed)
    actors = [user(store, n) for n in ("commander", "cg_staff", "sw_staff", "grid_1",
                                        "leader")] + [None]
    ids = [report_incident(store, None, category=rng.choice(["garbage_overflow",
                                                             "road_waterlogging"]),
                           title=f"随机 {i}", lon=0.3, lat=0.2, source="hotline", now=T0).id
           for i in range(incidents)]
    commander = actors[0]
    done: dict[str, int] = {}
    now = T0
    for _ in range(steps):
        now += timedelta(minutes=rng.randint(1, 90))
        incident_id = rng.choice(ids)
        actor = rng.choice(actors)
        inc = get_incident(store, commander, incident_id)
        options = [r for r in allowed_actions(store, actor, inc) if r.action != "merge"]
        if not options:
            continue
        # forward steps are likelier, so that walks reach closing, rating and reopening
        rule = rng.choices(options, [_WEIGHTS.get(r.action, 6) for r in options])[0]
        try:
            transition(store, actor, incident_id, rule.action, note="随机步骤", now=now,
                       **_fields(rng, rule.action, inc))
        except TransitionRefused:
            continue  # e.g. resolve with a pending co-task: refused, nothing changed
        done[rule.action] = done.get(rule.action, 0) + 1
    return done


@pytest.mark.parametrize(("seed", "reaches"), [
    (1, ("verify_failed", "rate")),
    (2, ("return", "rate", "reopen")),
    (3, ("return", "co_done")),
])
def test_facts_follow_a_random_walk(city: Store, seed: int, reaches: tuple) -> None:  # noqa: F811
    done = _walk(city, seed)
    # the walk went through the actions the facts count
    assert all(done.get(a) for a in ("dispatch", "claim", "supervise", "close", *reaches)), done
    assert city.query(ON_INCIDENTS) == city.query(FROM_EVENTS)
    counts = city.query_one("SELECT sum(returned_count), sum(reopened_count),"
                            " sum(supervised_count) FROM incidents")
    assert counts == (done.get("return", 0), done.get("reopen", 0), done.get("supervise", 0))


def test_backfill_recomputes_the_facts_from_the_events(city: Store) -> None:  # noqa: F811
    _walk(city, 7, steps=100)
    expected = city.query(FROM_EVENTS)
    city.cursor().execute("UPDATE incidents SET first_dispatched_at = NULL, first_claimed_at ="
                          " NULL, returned_count = 0, reopened_count = 0, supervised_count = 0")
    assert city.query(ON_INCIDENTS) != expected
    city.cursor().execute(BACKFILL_FACTS_SQL)
    assert city.query(ON_INCIDENTS) == expected


def test_migration_007_backfills_existing_incidents(city: Store, tmp_path) -> None:  # noqa: F811
    """A database at version 6 with incidents and events gets the facts on migrating."""
    _walk(city, 11, steps=80)
    expected = city.query(FROM_EVENTS)
    with city.transaction() as cur:
        for column in FACT_COLUMNS:
            cur.execute(f"ALTER TABLE incidents DROP COLUMN {column}")
        cur.execute("DELETE FROM schema_migrations WHERE version >= 7")
        newer = cur.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert newer == 6
    from core.store import _migrations

    sql = next(s for v, _, s in _migrations() if v == 7)
    with city.transaction() as cur:  # what Store.migrate runs for 007
        cur.execute(sql)
    assert city.query(ON_INCIDENTS) == expected
    assert city.query_one("SELECT count(*) FROM incidents WHERE returned_count IS NULL OR"
                          " reopened_count IS NULL OR supervised_count IS NULL") == (0,)
