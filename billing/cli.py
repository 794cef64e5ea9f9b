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


outbox_app = typer.Typer(help="Reader emails waiting, sent or failed.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("list")
def outbox_list(
    failed: Annotated[bool, typer.Option("--failed", help="Only emails that gave up.")] = False,
    status: Annotated[str | None, typer.Option(help="Only emails in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
) -> None:
    """Show emails in the outbox with their attempts and last error."""
    from billing.db import session_scope
    from billing.outbox import OutboxError, list_emails

    if failed and status not in (None, "failed"):
        raise typer.BadParameter("--failed and --status disagree", param_hint="--status")
    with session_scope() as session:
        try:
            rows = list_emails(session, status="failed" if failed else status, limit=limit)
        except OutboxError as error:
            raise typer.BadParameter(str(error), param_hint="--status") from error
        for row in rows:
            last_error = (row.last_error or "").replace("\n", " ")[:120]
            typer.echo(
                f"{row.id}\t{row.status}\t{row.attempts}\t{row.template}\t{row.to_email}\t"
                f"{row.dedupe_key}\t{row.updated_at:%Y-%m-%d %H:%M}\t{last_error}"
            )
    if not rows:
        typer.echo("no emails", err=True)


@outbox_app.command("retry")
def outbox_retry(
    outbox_id: Annotated[int, typer.Argument(help="The id from `outbox list`.")],
) -> None:
    """Send a failed email again, with a fresh set of attempts."""
    from billing.db import session_scope
    from billing.outbox import OutboxError, retry_email

    try:
        with session_scope() as session:
            row = retry_email(session, outbox_id)
            summary = f"email {row.id} ({row.template} to {row.to_email}) queued again"
    except OutboxError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(summary)


if __name__ == "__main__":
    app()
