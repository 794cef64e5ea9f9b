"""The `pledges` command: run the service, its workers and its maintenance jobs."""

import os
import sys
from typing import Annotated

import typer

from billing import migrate

app = typer.Typer(
    help="Reader Pledges: reader-revenue backend for newsrooms.", no_args_is_help=True
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for finance staff.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")


def _become(command: list[str]) -> None:
    """Replace this process with `command`: signals reach Celery itself, no child is orphaned."""
    sys.stdout.flush()
    os.execv(command[0], command)  # noqa: S606  (a fixed argv, no shell involved)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run the HTTP API (pledges, webhooks, reports)."""
    import uvicorn

    uvicorn.run(
        "billing.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_level="info",
    )


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Tasks run at once.")] = 2,
    beat: Annotated[bool, typer.Option(help="Also run the periodic scheduler.")] = True,
) -> None:
    """Run the Celery worker (and beat, the periodic scheduler)."""
    command = [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
        "--loglevel=INFO", f"--concurrency={concurrency}", "--pool=threads",
    ]  # fmt: skip
    if beat:
        command.append("--beat")
    _become(command)


@app.command()
def beat() -> None:
    """Run only the periodic scheduler, for deployments that run it apart from the workers."""
    _become([sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel=INFO"])


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (the newest by default)."""
    migrate.upgrade(revision=revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()]) -> None:
    """Undo migrations down to REVISION ('base' removes every table)."""
    migrate.downgrade(revision=revision)
    typer.echo(f"database at {revision}")


@apikey_app.command("create")
def apikey_create(
    role: Annotated[str, typer.Option(help="finance or admin.")] = "finance",
    name: Annotated[str | None, typer.Option(help="Who or what the key is for.")] = None,
) -> None:
    """Create a key and print it, alone on the last line; it is not shown again."""
    from billing.apikeys import ROLES, create_api_key
    from billing.db import session_scope

    if role not in ROLES:
        raise typer.BadParameter(f"must be one of {', '.join(ROLES)}", param_hint="--role")
    with session_scope() as session:
        row, key = create_api_key(session, role, name)
    typer.echo(f"created {role} key {row.prefix}… (id {row.id}); store it now, it is shown once:")
    typer.echo(key)


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    stripe_port: Annotated[int, typer.Option(help="localstripe port.")] = 8420,
    smtp_port: Annotated[int, typer.Option(help="Mail catcher port.")] = 8025,
) -> None:
    """Everything on this machine: API, worker, beat, localstripe and a mail catcher."""
    from billing.dev import DevPorts, run_dev

    ports = DevPorts(api=port, stripe=stripe_port, smtp=smtp_port)
    raise typer.Exit(run_dev(ports, environ=dict(os.environ)))


# Finance reports and key management live with the reports.
from billing.reports.commands import register as _register_report_commands  # noqa: E402

_register_report_commands(app, apikey_app)


reader_app = typer.Typer(help="Readers' data rights: export and erasure.", no_args_is_help=True)
app.add_typer(reader_app, name="reader")


@reader_app.command("export")
def reader_export(email: Annotated[str, typer.Argument(help="The reader's address.")]) -> None:
    """Print everything held about EMAIL as JSON."""
    import orjson

    from billing.db import session_scope
    from billing.manage.data_rights import export_reader, find_reader

    with session_scope() as session:
        reader = find_reader(session, email)
        if reader is None:
            typer.echo(f"no reader with the address {email}", err=True)
            raise typer.Exit(1)
        typer.echo(orjson.dumps(export_reader(session, reader), option=orjson.OPT_INDENT_2))


@reader_app.command("erase")
def reader_erase(
    email: Annotated[str, typer.Argument(help="The reader's address.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm; nothing happens without it.")
    ] = False,
) -> None:
    """Stop EMAIL's pledges and anonymise them; payment records stay, anonymised."""
    from billing.db import session_scope
    from billing.manage.data_rights import erase_reader, find_reader
    from billing.stripe_gateway import get_gateway

    if not yes:
        typer.echo("erasure cannot be undone; run again with --yes to confirm", err=True)
        raise typer.Exit(2)
    with session_scope() as session:
        reader = find_reader(session, email)
        if reader is None:
            typer.echo(f"no reader with the address {email}", err=True)
            raise typer.Exit(1)
        erase_reader(session, get_gateway(), reader)
    typer.echo(f"erased the reader who had the address {email}")


if __name__ == "__main__":
    app()
