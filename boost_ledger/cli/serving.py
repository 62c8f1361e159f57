"""``boost serve`` and ``boost migrate``."""

from __future__ import annotations

import argparse
from typing import Any

from boost_ledger import migrations, postgres
from boost_ledger.server import serve
from boost_ledger.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser("serve", help="serve the API (and run the workers)")
    parser.add_argument("--host", help="address to bind (BOOST_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (BOOST_PORT, default 8000)")
    parser.set_defaults(handler=_serve)

    parser = commands.add_parser("migrate", help="apply pending database migrations")
    parser.set_defaults(handler=_migrate)


async def _serve(arguments: argparse.Namespace) -> int:
    settings = Settings.from_env()
    overrides: dict[str, Any] = {}
    if arguments.host:
        overrides["host"] = arguments.host
    if arguments.port:
        overrides["port"] = arguments.port
    if overrides:
        fields = {name: getattr(settings, name) for name in settings.__struct_fields__}
        settings = Settings(**{**fields, **overrides})
    await serve(settings)
    return 0


async def _migrate(arguments: argparse.Namespace) -> int:
    settings = Settings.from_env()
    dsn = await postgres.prepare_dsn(settings.database_url, settings.data_dir)
    applied = await migrations.migrate(dsn)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0
