"""Typed settings, declared once.

Each setting has a name, a type, a default and a help text (``Settings.model_fields``).
Values come from, highest precedence first: environment variables (``YIWANG_<NAME>``),
the ``yiwang.toml`` file (``$YIWANG_CONFIG`` or ``./yiwang.toml``), then the defaults below.
A bad value fails loudly at start-up with the setting's name and the reason.

>>> s = load_settings(data_dir="/tmp/city")
>>> s.database_path.name
'city.duckdb'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings", "SettingsError", "load_settings", "settings_table"]


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


def _config_file() -> Path:
    return Path(os.environ.get("YIWANG_CONFIG", "yiwang.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="YIWANG_", extra="forbid", validate_default=True, frozen=True
    )

    data_dir: Path = Field(Path("data"), description="Folder for the database, inboxes and keys.")
    storage_url: str = Field(
        "",
        description="Where data lives. Empty means duckdb:///<data_dir>/city.duckdb (embedded). "
        "A ducklake:postgresql://… URL selects cluster mode (later).",
    )
    host: str = Field("127.0.0.1", description="Address the web server listens on.")
    port: int = Field(8050, ge=1, le=65535, description="Port the web server listens on.")
    threads: int = Field(8, ge=1, le=256, description="Web server worker threads.")
    connection_limit: int = Field(
        1000, ge=10, le=100_000,
        description="Open HTTP connections the embedded server keeps (waitress's default of 100 "
                    "queued every browser past the hundredth: wall screens and staff keep theirs "
                    "open).")
    secret_key: str = Field(
        "",
        description="Session signing key. Empty: generated once into <data_dir>/secret_key.",
        repr=False,
    )
    default_locale: Literal["zh_CN", "en"] = Field("zh_CN", description="UI language by default.")
    session_hours: float = Field(12.0, gt=0, le=720, description="Login session lifetime (hours).")
    scheduler_enabled: bool = Field(True, description="Run the pipeline scheduler in the server.")
    demo_seed: int = Field(20261128, description="Seed of the demo city generator.")
    demo_center_lat: float = Field(31.91, ge=-90, le=90, description="Demo city centre latitude.")
    demo_center_lon: float = Field(120.28, ge=-180, le=180, description="Demo city centre longitude.")
    demo_districts: int = Field(9, ge=2, le=40, description="Districts in the demo city.")
    demo_streets: int = Field(66, ge=2, le=400, description="Streets (街道/乡镇) in the demo city.")
    demo_communities: int = Field(440, ge=2, le=5000, description="Communities in the demo city.")
    demo_sensors: int = Field(2400, ge=6, le=200_000, description="Sensors in the demo city.")
    demo_days: int = Field(30, ge=1, le=366, description="Days of historical readings.")
    demo_reading_minutes: int = Field(
        15, ge=1, le=1440, description="Minutes between historical readings of one sensor."
    )
    demo_incidents: int = Field(20_000, ge=0, le=5_000_000, description="Historical incidents.")
    tile_url: str = Field(
        "",
        description="Optional intranet XYZ raster tile URL template; empty: polygons only.",
    )
    password_min_length: int = Field(
        10, ge=8, le=128, description="Shortest password accepted for a local account."
    )
    password_classes: int = Field(
        3, ge=1, le=4,
        description="Character classes a password needs (of lower, upper, digit, symbol).",
    )
    password_max_age_days: int = Field(
        90, ge=0, le=3650,
        description="Days before a password must be changed at login; 0: never expires.",
    )
    login_max_failures: int = Field(
        5, ge=1, le=100, description="Failed logins in a row that lock an account."
    )
    login_lockout_minutes: float = Field(
        15.0, gt=0, le=1440, description="Minutes a locked account stays locked."
    )
    idle_timeout_minutes: float = Field(
        30.0, gt=0, le=1440, description="A session idle this long is logged out."
    )
    totp_required: bool = Field(
        True,
        description="Require a TOTP second factor for the roles in totp_roles (enrolment at "
        "next login). `yiwang demo` turns it off for the demo logins.",
    )
    totp_roles: list[str] = Field(
        ["commander", "sysadmin", "secadmin", "auditor"],
        description="Roles that must use a TOTP second factor when totp_required is on.",
    )
    oidc_issuer: str = Field(
        "",
        description="OpenID Connect issuer URL of the identity provider for single sign-on; "
        "empty: local accounts only.",
    )
    oidc_client_id: str = Field("", description="Client id registered at the identity provider.")
    oidc_client_secret: str = Field(
        "", description="Client secret registered at the identity provider.", repr=False
    )
    oidc_username_claim: str = Field(
        "preferred_username",
        description="ID-token claim naming the Yiwang account a provider user logs in as "
        "(the account, its role and jurisdiction are managed in Yiwang).",
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Secure flag on cookies: auto sets it on HTTPS requests "
        "(also behind a proxy sending X-Forwarded-Proto when trusted).",
    )

    @field_validator("totp_roles")
    @classmethod
    def _known_roles(cls, v: list[str]) -> list[str]:
        from core.roles import Role

        unknown = [r for r in v if r not in {role.value for role in Role}]
        if unknown:
            raise ValueError(f"unknown roles {unknown}")
        return v

    @field_validator("storage_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if v and not v.startswith(("duckdb://", "ducklake:")):
            raise ValueError("must start with duckdb:// or ducklake:")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, toml)

    @property
    def database_path(self) -> Path:
        """The embedded DuckDB file (embedded mode)."""
        if self.storage_url.startswith("duckdb://"):
            return Path(self.storage_url.removeprefix("duckdb://"))
        return self.data_dir / "city.duckdb"


def load_settings(**overrides: Any) -> Settings:
    """Read settings; explicit ``overrides`` (e.g. CLI options) win over everything."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        ]
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None


def settings_table() -> list[tuple[str, str, str, str]]:
    """(name, type, default, help) for every setting: the documentation source."""
    rows = []
    for name, field in Settings.model_fields.items():
        typ = getattr(field.annotation, "__name__", str(field.annotation))
        rows.append((name, typ, repr(field.default), field.description or ""))
    return rows
