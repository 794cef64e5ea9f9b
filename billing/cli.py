"""The `pledges` command: run the service, its workers and its maintenance jobs."""

import os
import subprocess
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
    raise typer.Exit(subprocess.call(command))


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
) -> None:
    """Everything on this machine: API, worker, beat, localstripe and a mail catcher."""
    from billing.dev import run_dev

    raise typer.Exit(run_dev(port=port, environ=dict(os.environ)))


if __name__ == "__main__":
    app()


@apikey_app.command("list")
def apikey_list() -> None:
    """Every key: id, prefix, role, name, when it was created and last used, whether revoked."""
    from sqlalchemy import select

    from billing.db import session_scope
    from billing.models import ApiKey

    with session_scope() as session:
        rows = session.scalars(select(ApiKey).order_by(ApiKey.id)).all()
        if not rows:
            typer.echo("no API keys")
        for row in rows:
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never used"
            typer.echo(
                f"{row.id}\t{row.prefix}…\t{row.role}\t{row.name or '-'}\t"
                f"created {row.created_at:%Y-%m-%d}\t{used}\t{state}"
            )


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[int, typer.Argument(help="The id from `apikey list`.")],
) -> None:
    """Revoke a key: every request with it is refused from now on."""
    from billing.apikeys import revoke_api_key
    from billing.db import session_scope

    with session_scope() as session:
        revoked = revoke_api_key(session, key_id)
    if not revoked:
        typer.echo(f"no active API key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked API key {key_id}")


report_app = typer.Typer(
    help="Finance reports, as on the dashboard and the API.", no_args_is_help=True
)
app.add_typer(report_app, name="report")


def _report_command(name: str) -> None:
    def command(
        from_: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD.")] = None,
        to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive.")] = None,
        currency: Annotated[str | None, typer.Option(help="Only this currency.")] = None,
        output: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
        granularity: Annotated[str, typer.Option(help="revenue only: day, week, month.")] = "month",
    ) -> None:
        from billing.db import session_scope
        from billing.reports.params import ReportError
        from billing.reports.terminal import FORMATS, render
        from billing.settings import get_settings

        if output not in FORMATS:
            raise typer.BadParameter("must be table, csv or json", param_hint="--format")
        try:
            with session_scope() as session:
                text = render(session, name, from_, to, currency, output, granularity,
                              get_settings().reporting_timezone)  # fmt: skip
        except ReportError as error:
            typer.echo(error.message, err=True)
            raise typer.Exit(2) from None
        typer.echo(text, nl=not text.endswith("\n"))

    command.__doc__ = f"The {name} report."
    report_app.command(name)(command)


for _name in ("summary", "revenue", "movement", "recovery", "attribution"):
    _report_command(_name)
