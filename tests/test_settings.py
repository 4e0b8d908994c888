"""core.settings: defaults < yiwang.toml < environment < explicit overrides; loud errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.settings import Settings, SettingsError, load_settings, settings_table


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment whose yiwang.toml is ``config`` (absent until written)."""
    for name in list(os.environ):
        if name.startswith("YIWANG_"):
            monkeypatch.delenv(name)
    path = tmp_path / "yiwang.toml"
    monkeypatch.setenv("YIWANG_CONFIG", str(path))
    return path


def test_defaults(config: Path) -> None:
    s = load_settings()
    assert (s.host, s.port, s.threads, s.default_locale) == ("127.0.0.1", 8050, 8, "zh_CN")
    assert s.database_path == Path("data") / "city.duckdb"
    assert s.scheduler_enabled is True and s.storage_url == ""


def test_toml_overrides_defaults(config: Path) -> None:
    config.write_text('port = 9000\ndefault_locale = "en"\ndata_dir = "/srv/city"\n',
                      encoding="utf-8")
    s = load_settings()
    assert (s.port, s.default_locale, s.threads) == (9000, "en", 8)
    assert s.database_path == Path("/srv/city/city.duckdb")


def test_environment_overrides_toml_and_explicit_overrides_win(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text("port = 9000\nthreads = 4\n", encoding="utf-8")
    monkeypatch.setenv("YIWANG_PORT", "9100")
    monkeypatch.setenv("YIWANG_SCHEDULER_ENABLED", "false")
    s = load_settings()
    assert (s.port, s.threads, s.scheduler_enabled) == (9100, 4, False)
    assert load_settings(port=9200, threads=None).port == 9200
    assert load_settings(threads=None).threads == 4  # None means "not given"


def test_storage_url_selects_the_database_file(config: Path) -> None:
    s = load_settings(storage_url="duckdb:///var/lib/yiwang/wuxi.duckdb")
    assert s.database_path == Path("/var/lib/yiwang/wuxi.duckdb")


@pytest.mark.parametrize(("toml", "env", "named"), [
    ("port = 70000\n", {}, "port"),
    ('colour = "red"\n', {}, "colour"),
    ('storage_url = "mysql://db/city"\n', {}, "storage_url"),
    ("", {"YIWANG_THREADS": "many"}, "threads"),
    ('default_locale = "fr"\n', {}, "default_locale"),
    ('totp_roles = ["commander", "king"]\n', {}, "totp_roles"),
    ("", {"YIWANG_LOGIN_MAX_FAILURES": "0"}, "login_max_failures"),
    ("password_min_length = 6\n", {}, "password_min_length"),
    ('cookie_secure = "sometimes"\n', {}, "cookie_secure"),
])
def test_bad_value_names_the_setting(config: Path, monkeypatch: pytest.MonkeyPatch,
                                     toml: str, env: dict[str, str], named: str) -> None:
    config.write_text(toml, encoding="utf-8")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert f"  {named}: " in str(exc.value)


def test_secret_key_is_never_shown(config: Path) -> None:
    s = load_settings(secret_key="do-not-print-me", oidc_client_secret="nor-me")
    for secret in ("do-not-print-me", "nor-me"):
        assert secret not in repr(s) and secret not in str(s)


def test_security_defaults_and_environment(config: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.login_max_failures, s.login_lockout_minutes, s.totp_required) == (5, 15.0, True)
    assert set(s.totp_roles) == {"commander", "sysadmin", "secadmin", "auditor"}
    monkeypatch.setenv("YIWANG_TOTP_ROLES", '["commander"]')
    monkeypatch.setenv("YIWANG_TOTP_REQUIRED", "false")
    s = load_settings()
    assert (s.totp_roles, s.totp_required) == (["commander"], False)


def test_settings_are_frozen(config: Path) -> None:
    s = load_settings()
    with pytest.raises(ValueError):
        s.port = 1  # type: ignore[misc]


def test_settings_table_documents_every_field() -> None:
    rows = settings_table()
    assert [r[0] for r in rows] == list(Settings.model_fields)
    undocumented = [name for name, _, _, help_text in rows if len(help_text.strip()) < 10]
    assert undocumented == []
    by_name = {r[0]: r for r in rows}
    assert by_name["port"][1:3] == ("int", "8050")
