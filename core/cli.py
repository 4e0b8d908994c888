"""The ``yiwang`` command.

Commands owned by other packages (``serve`` from dashboard, ``build-demo`` from pipelines)
register through the ``yiwang.commands`` entry point group, so ``core`` imports neither.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from core.settings import Settings, SettingsError, load_settings, settings_table
from core.store import Store, StoreError

__all__ = ["data_dir_option", "main", "open_store", "settings_from"]

console = Console(stderr=True)


def data_dir_option(fn: Callable) -> Callable:
    """``--data-dir``: where the database, inboxes and keys live (setting ``data_dir``)."""
    return click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Folder for the database, inboxes and keys (default: setting data_dir, ./data).",
    )(fn)


def settings_from(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def open_store(settings: Settings) -> Store:
    try:
        return Store.from_settings(settings)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


class _Yiwang(click.Group):
    """Built-in commands plus those registered by other packages."""

    def _plugins(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group="yiwang.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None and name in self._plugins():
            cmd = self._plugins()[name].load()
        return cmd


@click.group(cls=_Yiwang, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Yiwang (一网统管): the one-network unified command dashboard.

    Start with `yiwang demo`: it builds a demo city (once) and serves it at
    http://127.0.0.1:8050. Settings come from YIWANG_* environment variables, then
    yiwang.toml, then defaults (see `yiwang settings`).
    """


@main.command()
@data_dir_option
def init(data_dir: Path | None) -> None:
    """Create the database (if absent) and apply pending migrations."""
    settings = settings_from(data_dir=data_dir)
    store = open_store(settings)
    console.print(f"database {settings.database_path} at schema version {store.schema_version()}")


@main.command()
@data_dir_option
@click.option("--port", type=int, default=None, help="Port to serve on (default 8050).")
@click.option("--rebuild", is_flag=True, help="Throw away an existing demo city first.")
@click.pass_context
def demo(ctx: click.Context, data_dir: Path | None, port: int | None, rebuild: bool) -> None:
    """Build the demo city if absent, then serve it (embedded mode).

    The demo logins use the documented password only: the TOTP requirement
    (setting totp_required) is off unless YIWANG_TOTP_REQUIRED says otherwise.
    """
    import os

    os.environ.setdefault("YIWANG_TOTP_REQUIRED", "false")
    build = main.get_command(ctx, "build-demo")
    serve = main.get_command(ctx, "serve")
    if build is None or serve is None:
        raise click.ClickException("yiwang is not installed: run `make demo` or `pip install -e .`")
    ctx.invoke(build, data_dir=data_dir, if_absent=not rebuild)
    ctx.invoke(serve, data_dir=data_dir, port=port)


@main.command("load-jurisdictions")
@data_dir_option
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--layer", default=None, help="Layer name inside a GeoPackage.")
@click.option("--code", "code_col", default="code", show_default=True, help="Code column.")
@click.option("--parent", "parent_col", default="parent_code", show_default=True,
              help="Parent code column.")
@click.option("--name", "name_col", default="name_zh", show_default=True,
              help="Chinese name column.")
@click.option("--name-en", "name_en_col", default="name_en", show_default=True,
              help="English name column (optional in the file).")
@click.option("--level", "level_col", default="level", show_default=True,
              help="Level column: province/city/district/street/community/grid or 市/区/街道/社区/网格.")
@click.option("--population", "population_col", default="population", show_default=True,
              help="Population column (optional in the file).")
@click.option("--crs", default=None,
              help="CRS of the file when it declares none (e.g. EPSG:4490 for CGCS2000).")
@click.option("--no-repair", is_flag=True, help="Refuse invalid geometry instead of repairing it.")
def load_jurisdictions(data_dir: Path | None, source: Path, layer: str | None, code_col: str,
                       parent_col: str, name_col: str, name_en_col: str, level_col: str,
                       population_col: str, crs: str | None, no_repair: bool) -> None:
    """Replace the jurisdiction tree from GeoJSON, GeoPackage, Shapefile (.shp/.zip) or
    GeoParquet, reprojected to EPSG:4326."""
    from core.geoload import ColumnMap, read_jurisdictions
    from core.jurisdictions import JurisdictionError, save_jurisdictions

    settings = settings_from(data_dir=data_dir)
    columns = ColumnMap(code=code_col, parent_code=parent_col, name_zh=name_col,
                        name_en=name_en_col, level=level_col, population=population_col)
    try:
        gdf, notes = read_jurisdictions(source, columns=columns, layer=layer, crs=crs,
                                        repair=not no_repair)
        summary = save_jurisdictions(open_store(settings), gdf)
    except JurisdictionError as exc:
        raise click.ClickException(str(exc)) from None
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"loaded {summary.count} jurisdictions: {summary.levels}")


@main.group()
def users() -> None:
    """Add, list, disable users and reset passwords."""


@users.command("list")
@data_dir_option
def users_list(data_dir: Path | None) -> None:
    """List every user with role and bindings."""
    from core.users import list_users

    table = Table("username", "name", "role", "jurisdiction", "department", "active")
    for u in list_users(open_store(settings_from(data_dir=data_dir))):
        table.add_row(u.username, u.display_name, u.role.value, u.jurisdiction_code or "",
                      u.department_code or "", "yes" if u.active else "no")
    Console().print(table)


@users.command("add")
@data_dir_option
@click.argument("username")
@click.option("--role", required=True, help="commander, leader, dept_staff, dept_admin, …")
@click.option("--name", "display_name", default=None, help="Display name.")
@click.option("--jurisdiction", default=None, help="Jurisdiction code the user is bound to.")
@click.option("--department", default=None, help="Department code the user is bound to.")
@click.password_option(help="Password (asked when not given).")
def users_add(data_dir: Path | None, username: str, role: str, display_name: str | None,
              jurisdiction: str | None, department: str | None, password: str) -> None:
    """Add a user."""
    from core.users import PasswordPolicy, UserError, create_user

    settings = settings_from(data_dir=data_dir)
    try:
        user = create_user(open_store(settings), username, password,
                           role=role, display_name=display_name,
                           jurisdiction_code=jurisdiction, department_code=department,
                           policy=PasswordPolicy.from_settings(settings))
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"added {user.username} ({user.role})")


@users.command("reset-password")
@data_dir_option
@click.argument("username")
@click.password_option(help="New password (asked when not given).")
def users_reset_password(data_dir: Path | None, username: str, password: str) -> None:
    """Set a new password for a user."""
    from core.users import PasswordPolicy, UserError, reset_password

    settings = settings_from(data_dir=data_dir)
    try:
        reset_password(open_store(settings), username, password,
                       policy=PasswordPolicy.from_settings(settings))
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"password of {username} reset")


@users.command("disable")
@data_dir_option
@click.argument("username")
def users_disable(data_dir: Path | None, username: str) -> None:
    """Disable a user (they can no longer log in)."""
    from core.users import UserError, set_active

    try:
        set_active(open_store(settings_from(data_dir=data_dir)), username, False)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"{username} disabled")


@main.command("settings")
def settings_cmd() -> None:
    """Show every setting: name, type, default, help."""
    table = Table("name", "type", "default", "help")
    for row in settings_table():
        table.add_row(*row)
    Console().print(table)


@main.group()
def audit() -> None:
    """Check and read the audit log."""


def _verify(data_dir: Path | None) -> None:
    from core.audit import verify_chain

    check = verify_chain(open_store(settings_from(data_dir=data_dir)))
    if check.ok:
        console.print(f"audit log intact: {check.entries} entries, signed head matches")
        return
    where = f" at entry {check.first_broken}" if check.first_broken is not None else ""
    console.print(f"[red]audit log broken{where}: {check.reason}[/]")
    sys.exit(1)


@audit.command("verify")
@data_dir_option
def audit_verify(data_dir: Path | None) -> None:
    """Check the hash chain and the signed head; exit 1 at the first broken link."""
    _verify(data_dir)


@main.command("audit-verify", hidden=True)
@data_dir_option
def audit_verify_alias(data_dir: Path | None) -> None:
    """Same as `yiwang audit verify` (kept for scripts)."""
    _verify(data_dir)


@audit.command("export")
@data_dir_option
@click.option("--as-user", "as_user", required=True, help="The auditor account reading.")
@click.option("--action", default=None, help="Only entries with this action.")
@click.option("--actor", default=None, help="Only entries by this user.")
@click.option("--text", default=None, help="Only entries whose target/detail contain this.")
@click.option("--limit", default=10_000, show_default=True, help="At most this many rows.")
def audit_export(data_dir: Path | None, as_user: str, action: str | None, actor: str | None,
                 text: str | None, limit: int) -> None:
    """Write matching entries as CSV to standard output (auditor only; the read is logged)."""
    import csv

    from core.access import AccessDenied
    from core.audit import search
    from core.users import get_user

    store = open_store(settings_from(data_dir=data_dir))
    user = get_user(store, as_user)
    try:
        rows = search(store, user, action=action, actor=actor, text=text, limit=limit)
    except AccessDenied as exc:
        raise click.ClickException(f"refused: {exc}") from None
    out = csv.writer(sys.stdout)
    out.writerow(["seq", "ts", "actor", "action", "target", "detail"])
    for r in rows:
        out.writerow([r.seq, r.ts.isoformat(), r.actor, r.action, r.target or "",
                      r.detail or ""])
