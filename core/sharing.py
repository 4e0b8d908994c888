"""The data catalog and sharing rules (design §4): datasets, backflow, subscriptions, masking,
and the data-sharing scoreboard.

A dataset is a table of the store plus metadata: owner department, classification
(``public`` < ``internal`` < ``sensitive`` < ``secret``), sharing mode (``backflow``,
``subscription``, ``owner_only``), the column holding each row's jurisdiction, and its
sensitive columns (name, phone, ID number…). The rules, enforced here for every caller:

- **secret** datasets are owner-only: never listed, never readable outside the owning
  department, and cannot be given a sharing mode (the table has a CHECK as well);
- **backflow** (回流): every business user reads the rows inside their own subtree;
- **subscription** (按需订阅): a unit requests (subtree, columns, purpose, until); the owning
  department's dept_admin approves or refuses; the owner or the requesting unit revokes;
  past ``until`` it lapses. Holders read the approved columns of the approved subtree that
  is also inside their own scope;
- sensitive columns are masked for anyone without need: the owner sees them, a subscription
  that names them (approved) sees them, everyone else gets ``***``;
- every grant, refusal, revocation and every read of shared data is audited; reads are also
  counted in ``share_reads`` for the scoreboard.

>>> ds = list_datasets(store, user)                           # doctest: +SKIP
>>> cols, rows = read_dataset(store, user, "elderly_care")    # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.access import AccessDenied, Power, refuse, require
from core.audit import record
from core.roles import Role
from core.scope import scope_for
from core.store import Store

__all__ = [
    "CLASSIFICATIONS",
    "Dataset",
    "Grant",
    "SHARING_MODES",
    "SharingError",
    "Subscription",
    "access",
    "classify",
    "decide_subscription",
    "get_dataset",
    "holdings",
    "list_datasets",
    "list_subscriptions",
    "mask_value",
    "read_dataset",
    "register_dataset",
    "request_subscription",
    "revoke_subscription",
    "scoreboard",
    "set_sharing",
    "unit_of",
]

CLASSIFICATIONS = ("public", "internal", "sensitive", "secret")
SHARING_MODES = ("backflow", "subscription", "owner_only")
MASK = "***"
MAX_SUBSCRIPTION_DAYS = 366
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_DS_COLUMNS = ("id, table_name, name_zh, name_en, owner_department, classification, sharing,"
               " jurisdiction_column, columns, sensitive_columns, description, created_at")
_SUB_COLUMNS = ("id, dataset_id, requester, requester_department, scope_code, columns,"
                " purpose, until, status, requested_at, decided_at, decided_by, decision_note,"
                " revoked_at, revoked_by")


class SharingError(ValueError):
    """Bad input to a catalog or sharing operation; the message says what."""


@dataclass(frozen=True)
class Dataset:
    id: str
    table_name: str
    name_zh: str
    name_en: str
    owner_department: str
    classification: str
    sharing: str
    jurisdiction_column: str
    columns: tuple[str, ...]
    sensitive_columns: tuple[str, ...]
    description: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Subscription:
    id: int
    dataset_id: str
    requester: str
    unit: str
    scope_code: str
    columns: tuple[str, ...]
    purpose: str
    until: datetime
    status: str
    requested_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_note: str | None
    revoked_at: datetime | None
    revoked_by: str | None

    def state(self, now: datetime | None = None) -> str:
        """The status, with ``expired`` for an approval past its date."""
        if self.status == "approved" and self.until <= (now or _now()):
            return "expired"
        return self.status


@dataclass(frozen=True)
class Grant:
    """How one user may read one dataset: mode, subtree paths, columns, unmasked columns."""

    mode: str                      # owner | backflow | subscription
    paths: tuple[str, ...]         # jurisdiction subtrees ('/C/D1/'…); () means all rows
    columns: tuple[str, ...]
    unmasked: frozenset[str] = field(default_factory=frozenset)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _ds(row: tuple) -> Dataset:
    return Dataset(*row[:8], tuple(row[8]), tuple(row[9]), row[10], row[11])


def _sub(row: tuple) -> Subscription:
    r = list(row)
    r[5] = tuple(r[5])
    return Subscription(*r)


def unit_of(user: Any) -> str:
    """The unit a user acts for: their department, else their jurisdiction office."""
    return f"dept:{user.department_code}" if user.department_code else \
        f"jur:{user.jurisdiction_code}"


def _is_owner(user: Any, ds: Dataset) -> bool:
    return (Role(user.role) in (Role.DEPT_STAFF, Role.DEPT_ADMIN)
            and user.department_code == ds.owner_department)


def _business(user: Any) -> bool:
    role = Role(user.role)
    return user.active and role.sees_business_data and role is not Role.SOCIAL_ORG


def _audit(store: Store, user: Any, action: str, target: str, cursor: Any = None,
           **detail: Any) -> None:
    record(store, user.username if user else "system", action, target=target, cursor=cursor,
           detail=json.dumps(detail, ensure_ascii=False, default=str) if detail else None)


# -- catalog ---------------------------------------------------------------------------------
def register_dataset(store: Store, *, id: str, table_name: str, name_zh: str, name_en: str,
                     owner_department: str, classification: str, sharing: str,
                     jurisdiction_column: str = "jurisdiction_code",
                     columns: Sequence[str] | None = None,
                     sensitive_columns: Sequence[str] = (), contract: dict | None = None,
                     description: str | None = None) -> Dataset:
    """Add (or replace) a dataset in the catalog — for pipelines, no acting user.

    ``columns`` defaults to every column of the table. Secret data cannot be shared.
    """
    if classification not in CLASSIFICATIONS:
        raise SharingError(f"classification must be one of {CLASSIFICATIONS}")
    if sharing not in SHARING_MODES:
        raise SharingError(f"sharing must be one of {SHARING_MODES}")
    if classification == "secret" and sharing != "owner_only":
        raise SharingError("a secret dataset cannot be shared: sharing must be owner_only")
    if not _IDENT.match(id) or not _IDENT.match(table_name):
        raise SharingError("dataset id and table name must be identifiers")
    actual = [r[0] for r in store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
        " ORDER BY ordinal_position", [table_name])]
    if not actual:
        raise SharingError(f"no table {table_name!r}")
    columns = list(columns or actual)
    unknown = [c for c in [*columns, jurisdiction_column, *sensitive_columns] if c not in actual]
    if unknown:
        raise SharingError(f"{table_name} has no columns {unknown}")
    if not store.query_one("SELECT 1 FROM departments WHERE code = ?", [owner_department]):
        raise SharingError(f"unknown department {owner_department!r}")
    with store.transaction() as cur:
        cur.execute("DELETE FROM datasets WHERE id = ?", [id])
        cur.execute(f"INSERT INTO datasets ({_DS_COLUMNS}, contract) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [id, table_name, name_zh, name_en, owner_department, classification,
                     sharing, jurisdiction_column, columns, list(sensitive_columns),
                     description, _now(), json.dumps(contract) if contract else None])
    return get_dataset_unchecked(store, id)


def get_dataset_unchecked(store: Store, dataset_id: str) -> Dataset | None:
    """The catalog row whoever asks — for pipelines only."""
    row = store.query_one(f"SELECT {_DS_COLUMNS} FROM datasets WHERE id = ?", [dataset_id])
    return _ds(row) if row else None


def _visible(user: Any, ds: Dataset) -> bool:
    if ds.classification == "secret":
        return _is_owner(user, ds)
    return user.active and Role(user.role) is not Role.SOCIAL_ORG


def list_datasets(store: Store, user: Any) -> list[Dataset]:
    """The datasets ``user`` may see in the catalog (never a secret one of another unit)."""
    rows = store.query(f"SELECT {_DS_COLUMNS} FROM datasets ORDER BY owner_department, id")
    return [ds for ds in map(_ds, rows) if _visible(user, ds)]


def get_dataset(store: Store, user: Any, dataset_id: str) -> Dataset | None:
    """One dataset if ``user`` may see it in the catalog, else None."""
    ds = get_dataset_unchecked(store, str(dataset_id))
    return ds if ds is not None and _visible(user, ds) else None


def set_sharing(store: Store, user: Any, dataset_id: str, sharing: str) -> None:
    """The owning department's dept_admin sets the sharing mode (never for secret data)."""
    ds = get_dataset(store, user, dataset_id)
    if sharing not in SHARING_MODES:
        raise SharingError(f"sharing must be one of {SHARING_MODES}")
    if ds is None or not (_is_owner(user, ds) and Role(user.role) is Role.DEPT_ADMIN):
        raise refuse(store, user, "set_sharing", target=f"dataset:{dataset_id}",
                     reason="only the owning department's admin sets the sharing mode")
    if ds.classification == "secret" and sharing != "owner_only":
        raise refuse(store, user, "set_sharing", target=f"dataset:{dataset_id}",
                     reason="secret data cannot be shared")
    with store.transaction() as cur:
        cur.execute("UPDATE datasets SET sharing = ? WHERE id = ?", [sharing, ds.id])
        _audit(store, user, "dataset_sharing_set", f"dataset:{ds.id}", cur,
               old=ds.sharing, new=sharing)


def classify(store: Store, user: Any, dataset_id: str, classification: str) -> None:
    """secadmin sets a classification (a security policy); secret forces owner_only."""
    require(store, user, Power.MANAGE_POLICIES, target=f"dataset:{dataset_id}")
    if classification not in CLASSIFICATIONS:
        raise SharingError(f"classification must be one of {CLASSIFICATIONS}")
    ds = get_dataset_unchecked(store, str(dataset_id))
    if ds is None or ds.classification == "secret":  # secret is the owner's alone
        raise refuse(store, user, "classify", target=f"dataset:{dataset_id}",
                     reason="no such dataset")
    with store.transaction() as cur:
        if classification == "secret":
            cur.execute("UPDATE datasets SET classification = 'secret', sharing = 'owner_only'"
                        " WHERE id = ?", [ds.id])
            cur.execute("UPDATE subscriptions SET status = 'revoked', revoked_at = ?,"
                        " revoked_by = ? WHERE dataset_id = ? AND status IN"
                        " ('requested', 'approved')", [_now(), user.username, ds.id])
        else:
            cur.execute("UPDATE datasets SET classification = ? WHERE id = ?",
                        [classification, ds.id])
        _audit(store, user, "dataset_classified", f"dataset:{ds.id}", cur,
               old=ds.classification, new=classification)


# -- who may read what -----------------------------------------------------------------------
def access(store: Store, user: Any, ds: Dataset, now: datetime | None = None) -> Grant | None:
    """The user's grant on ``ds``, or None (nothing readable)."""
    if user is None or not user.active:
        return None
    if _is_owner(user, ds):
        return Grant("owner", (), ds.columns, frozenset(ds.columns))
    if ds.classification == "secret" or not _business(user):
        return None
    scope = scope_for(store, user)
    if ds.sharing == "backflow":
        return Grant("backflow", (scope.root_path,), ds.columns)
    if ds.sharing != "subscription":
        return None
    subs = [s for s in _subscriptions(store, "dataset_id = ? AND requester_department = ?",
                                      [ds.id, unit_of(user)])
            if s.state(now) == "approved"]
    if not subs:
        return None
    paths, columns, unmasked = [], set(), set()
    for sub in subs:
        row = store.query_one("SELECT path FROM jurisdictions WHERE code = ?", [sub.scope_code])
        if row is None:
            continue
        # the approved subtree, cut to what the user's own scope covers
        if row[0].startswith(scope.root_path):
            paths.append(row[0])
        elif scope.root_path.startswith(row[0]):
            paths.append(scope.root_path)
        else:
            continue
        columns |= set(sub.columns)
        unmasked |= set(sub.columns) & set(ds.sensitive_columns)
    if not paths:
        return None
    return Grant("subscription", tuple(sorted(set(paths))),
                 tuple(c for c in ds.columns if c in columns), frozenset(unmasked))


def mask_value(value: Any) -> Any:
    """``***`` keeping the last 2 characters of long values: enough to tell rows apart.

    >>> mask_value("13912345678"), mask_value("王芳"), mask_value(None)
    ('***78', '***', None)
    """
    if value is None:
        return None
    text = str(value)
    return MASK + text[-2:] if len(text) >= 6 else MASK


def read_dataset(store: Store, user: Any, dataset_id: str, *,
                 columns: Sequence[str] | None = None, limit: int = 1000,
                 now: datetime | None = None) -> tuple[list[str], list[tuple]]:
    """The rows and columns of a dataset ``user`` may read, sensitive columns masked unless
    the grant covers them. Refusals raise ``AccessDenied`` (audited); every read of shared
    data is audited and counted."""
    ds = get_dataset(store, user, dataset_id)
    grant = access(store, user, ds, now) if ds is not None else None
    if grant is None:
        raise refuse(store, user, "read_dataset", target=f"dataset:{dataset_id}",
                     reason="no grant on this dataset")
    wanted = list(columns) if columns else list(grant.columns)
    outside = [c for c in wanted if c not in grant.columns]
    if outside:
        raise refuse(store, user, "read_dataset", target=f"dataset:{ds.id}",
                     reason="columns outside the grant", columns=outside[:20])
    # identifiers come from the catalog (checked at registration), never from the request
    select = ", ".join(f'"{c}"' for c in wanted)
    sql = f'SELECT {select} FROM "{ds.table_name}"'
    params: list[Any] = []
    if grant.paths:
        sql += (f' WHERE "{ds.jurisdiction_column}" IN (SELECT j.code FROM jurisdictions j,'
                " unnest(?::VARCHAR[]) AS t(p) WHERE starts_with(j.path, t.p))")
        params.append(list(grant.paths))
    sql += " LIMIT ?"
    params.append(max(0, min(int(limit), 100_000)))
    rows = store.query(sql, params)
    masked = [i for i, c in enumerate(wanted)
              if c in ds.sensitive_columns and c not in grant.unmasked]
    if masked:
        rows = [tuple(mask_value(v) if i in masked else v for i, v in enumerate(r))
                for r in rows]
    if grant.mode != "owner":
        with store.transaction() as cur:
            cur.execute("INSERT INTO share_reads VALUES (?, ?, ?, ?, ?, ?)",
                        [_now(), user.username, user.department_code, ds.id, grant.mode,
                         len(rows)])
            _audit(store, user, "shared_read", f"dataset:{ds.id}", cur, mode=grant.mode,
                   rows=len(rows), columns=wanted, masked=[wanted[i] for i in masked])
    return wanted, rows


# -- subscriptions -----------------------------------------------------------------------------
def _subscriptions(store: Store, where: str, params: list) -> list[Subscription]:
    return [_sub(r) for r in store.query(
        f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE {where} ORDER BY id", params)]


def _get_sub(store: Store, sub_id: Any) -> Subscription | None:
    try:
        sub_id = int(sub_id)
    except (TypeError, ValueError):
        return None
    found = _subscriptions(store, "id = ?", [sub_id])
    return found[0] if found else None


def request_subscription(store: Store, user: Any, dataset_id: str, *, scope_code: str,
                         columns: Sequence[str], purpose: str, until: datetime,
                         now: datetime | None = None) -> Subscription:
    """A unit asks the owner for a subtree and columns, until a date."""
    now = now or _now()
    ds = get_dataset(store, user, dataset_id)
    if ds is None or ds.sharing != "subscription" or not _business(user) or _is_owner(user, ds):
        raise refuse(store, user, "request_subscription", target=f"dataset:{dataset_id}",
                     reason="dataset not open to subscription for this user")
    if not scope_for(store, user).contains(store, str(scope_code)):
        raise refuse(store, user, "request_subscription", target=f"dataset:{ds.id}",
                     reason="requested area outside the user's scope", area=str(scope_code))
    columns = list(dict.fromkeys(columns))
    if not columns or any(c not in ds.columns for c in columns):
        raise SharingError(f"columns must be some of {list(ds.columns)}")
    purpose = (purpose or "").strip()
    if not purpose or len(purpose) > 500:
        raise SharingError("purpose must be 1–500 characters")
    if not isinstance(until, datetime) or until <= now or \
            until > now + timedelta(days=MAX_SUBSCRIPTION_DAYS):
        raise SharingError(f"until must be within {MAX_SUBSCRIPTION_DAYS} days from now")
    with store.transaction() as cur:
        sub_id = cur.execute("SELECT nextval('subscription_seq')").fetchone()[0]
        cur.execute(f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?,"
                    " ?, 'requested', ?, NULL, NULL, NULL, NULL, NULL)",
                    [sub_id, ds.id, user.username, unit_of(user), scope_code, columns,
                     purpose, until, now])
        _audit(store, user, "subscription_requested", f"subscription:{sub_id}", cur,
               dataset=ds.id, area=scope_code, columns=columns, until=until)
    return _get_sub(store, sub_id)


def decide_subscription(store: Store, user: Any, sub_id: Any, approve: bool, *,
                        note: str | None = None, now: datetime | None = None) -> Subscription:
    """The owning department's dept_admin approves or refuses a pending request."""
    sub = _get_sub(store, sub_id)
    ds = get_dataset_unchecked(store, sub.dataset_id) if sub else None
    if sub is None or ds is None or not (_is_owner(user, ds)
                                         and Role(user.role) is Role.DEPT_ADMIN):
        raise refuse(store, user, "decide_subscription", target=f"subscription:{sub_id}",
                     reason="only the owning department's admin decides")
    if sub.status != "requested":
        raise SharingError(f"subscription {sub.id} is {sub.status}, not requested")
    status = "approved" if approve else "refused"
    with store.transaction() as cur:
        cur.execute("UPDATE subscriptions SET status = ?, decided_at = ?, decided_by = ?,"
                    " decision_note = ? WHERE id = ? AND status = 'requested'",
                    [status, now or _now(), user.username, (note or "")[:500] or None, sub.id])
        _audit(store, user, f"subscription_{status}", f"subscription:{sub.id}", cur,
               dataset=ds.id, unit=sub.unit, note=note)
    return _get_sub(store, sub.id)


def revoke_subscription(store: Store, user: Any, sub_id: Any, *,
                        now: datetime | None = None) -> Subscription:
    """The owner's dept_admin, or the holding unit, ends an approved subscription."""
    sub = _get_sub(store, sub_id)
    ds = get_dataset_unchecked(store, sub.dataset_id) if sub else None
    allowed = sub is not None and ds is not None and (
        (_is_owner(user, ds) and Role(user.role) is Role.DEPT_ADMIN)
        or unit_of(user) == sub.unit)
    if not allowed:
        raise refuse(store, user, "revoke_subscription", target=f"subscription:{sub_id}",
                     reason="only the owner's admin or the holding unit may revoke")
    if sub.status not in ("approved", "requested"):
        raise SharingError(f"subscription {sub.id} is {sub.status}")
    with store.transaction() as cur:
        cur.execute("UPDATE subscriptions SET status = 'revoked', revoked_at = ?,"
                    " revoked_by = ? WHERE id = ?", [now or _now(), user.username, sub.id])
        _audit(store, user, "subscription_revoked", f"subscription:{sub.id}", cur,
               dataset=ds.id, unit=sub.unit)
    return _get_sub(store, sub.id)


def list_subscriptions(store: Store, user: Any) -> list[Subscription]:
    """Requests the user's unit made, plus — for a dept_admin — requests to their datasets."""
    if not user.active:
        return []
    where, params = "requester_department = ?", [unit_of(user)]
    if Role(user.role) is Role.DEPT_ADMIN and user.department_code:
        where += " OR dataset_id IN (SELECT id FROM datasets WHERE owner_department = ?)"
        params.append(user.department_code)
    return _subscriptions(store, where, params)


def holdings(store: Store, user: Any, now: datetime | None = None) -> list[Subscription]:
    """What the user's unit holds now (approved, not expired)."""
    return [s for s in _subscriptions(store, "requester_department = ?", [unit_of(user)])
            if s.state(now) == "approved"]


# -- the data-sharing scoreboard -------------------------------------------------------------
def scoreboard(store: Store, user: Any) -> list[dict[str, Any]]:
    """Per department: datasets shared by mode, requests received / answered / refused,
    median hours to answer, backflow rows delivered. Counts only, no contents; secret
    datasets are not counted."""
    if user is None or not user.active or Role(user.role) in (Role.SOCIAL_ORG,
                                                              Role.VENDOR_TECH):
        raise AccessDenied("scoreboard: not for this role")
    board: dict[str, dict[str, Any]] = {}
    for code, name_zh, name_en in store.query(
            "SELECT code, name_zh, name_en FROM departments WHERE kind = 'department'"
            " ORDER BY code"):
        board[code] = {"department": code, "name_zh": name_zh, "name_en": name_en,
                       "backflow": 0, "subscription": 0, "owner_only": 0, "received": 0,
                       "answered": 0, "refused": 0, "median_answer_hours": None,
                       "backflow_rows": 0}
    for dept, sharing, n in store.query(
            "SELECT owner_department, sharing, count(*) FROM datasets"
            " WHERE classification <> 'secret' GROUP BY ALL"):
        if dept in board:
            board[dept][sharing] = n
    answers: dict[str, list[float]] = {}
    for dept, status, requested_at, decided_at in store.query(
            "SELECT d.owner_department, s.status, s.requested_at, s.decided_at"
            " FROM subscriptions s JOIN datasets d ON d.id = s.dataset_id"
            " WHERE d.classification <> 'secret'"):
        if dept not in board:
            continue
        board[dept]["received"] += 1
        if decided_at is not None:
            board[dept]["answered"] += 1
            answers.setdefault(dept, []).append(
                (decided_at - requested_at).total_seconds() / 3600)
        if status == "refused":
            board[dept]["refused"] += 1
    for dept, hours in answers.items():
        board[dept]["median_answer_hours"] = round(statistics.median(hours), 2)
    for dept, rows in store.query(
            "SELECT d.owner_department, sum(r.rows) FROM share_reads r"
            " JOIN datasets d ON d.id = r.dataset_id WHERE r.mode = 'backflow' GROUP BY ALL"):
        if dept in board:
            board[dept]["backflow_rows"] = int(rows)
    return list(board.values())
