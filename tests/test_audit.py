"""core.audit: a hash-chained, append-only log whose tampering is found."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.audit import GENESIS, AuditCheck, record, verify_chain
from core.cli import main
from core.store import Store


def fill(store: Store, n: int = 5) -> None:
    for i in range(1, n + 1):
        record(store, f"user{i}", "login", target="session", detail=f"来自 10.0.0.{i}")


def test_entries_chain_and_verify(store: Store) -> None:
    assert verify_chain(store) == AuditCheck(True, 0)
    assert record(store, "li.wei", "login") == 1
    assert record(store, "li.wei", "dispatch", target="incident:7", detail="派单 城管局") == 2
    rows = store.query("SELECT seq, prev_hash, hash FROM audit_log ORDER BY seq")
    assert rows[0][1] == GENESIS and rows[1][1] == rows[0][2] and len(rows[1][2]) == 64
    assert verify_chain(store) == AuditCheck(True, 2)


@pytest.mark.parametrize(("tamper", "broken_at"), [
    ("UPDATE audit_log SET detail = '来自 192.168.1.1' WHERE seq = 3", 3),
    ("UPDATE audit_log SET actor = 'someone.else' WHERE seq = 5", 5),
    ("UPDATE audit_log SET ts = ts + INTERVAL 1 SECOND WHERE seq = 2", 2),
    ("DELETE FROM audit_log WHERE seq = 3", 4),
    ("DELETE FROM audit_log WHERE seq = 1", 2),
])
def test_tampering_breaks_the_chain_where_it_happened(store: Store, tamper: str,
                                                      broken_at: int) -> None:
    fill(store)
    store.query(tamper)
    check = verify_chain(store)
    assert not check.ok and check.first_broken == broken_at


def test_rehashing_a_row_still_breaks_the_next_link(store: Store) -> None:
    fill(store)
    store.query("UPDATE audit_log SET detail = 'forged', hash = repeat('a', 64) WHERE seq = 2")
    assert verify_chain(store).first_broken == 2


def test_entry_in_a_rolled_back_transaction_is_not_kept(store: Store) -> None:
    record(store, "li.wei", "login")
    with pytest.raises(RuntimeError), store.transaction() as cur:
        record(store, "li.wei", "close", target="incident:1", cursor=cur)
        raise RuntimeError("the action failed")
    assert store.query("SELECT count(*) FROM audit_log") == [(1,)]
    assert record(store, "li.wei", "logout") == 2
    assert verify_chain(store) == AuditCheck(True, 2)


def test_concurrent_records_keep_one_chain(store: Store) -> None:
    def work(n: int) -> None:
        for i in range(10):
            record(store, f"worker{n}", "tick", detail=str(i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert verify_chain(store) == AuditCheck(True, 40)


def test_audit_verify_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("YIWANG_STORAGE_URL", raising=False)
    store = Store.open(tmp_path / "city.duckdb")
    fill(store)
    store.close()
    runner = CliRunner()
    ok = runner.invoke(main, ["audit-verify", "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "intact: 5 entries" in ok.output

    store = Store.open(tmp_path / "city.duckdb")
    store.query("UPDATE audit_log SET detail = 'edited' WHERE seq = 3")
    store.close()
    broken = runner.invoke(main, ["audit-verify", "--data-dir", str(tmp_path)])
    assert broken.exit_code == 1
    assert "broken at entry 3" in broken.output
