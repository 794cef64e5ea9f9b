"""The `pledges` command: run the service, its workers and its maintenance jobs."""

import os
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from billing import migrate
from billing.settings import DEV_POSTGRES_PORT

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
    postgres_port: Annotated[
        int, typer.Option(help="Embedded PostgreSQL port (on 127.0.0.1).")
    ] = DEV_POSTGRES_PORT,
    demo: Annotated[
        bool, typer.Option("--demo", help="Fill the ledger with a demo year of pledges.")
    ] = False,
) -> None:
    """Everything on this machine: PostgreSQL, API, worker, beat, localstripe, a mail catcher."""
    from billing.dev import DevPorts, run_dev

    ports = DevPorts(api=port, stripe=stripe_port, smtp=smtp_port, postgres=postgres_port)
    raise typer.Exit(run_dev(ports, environ=dict(os.environ), demo=demo))


# Finance reports and key management live with the reports.
from billing.reports.commands import register as _register_report_commands  # noqa: E402

_register_report_commands(app, apikey_app)

# Outgoing webhooks to the newsroom's systems live with their package.
from billing.endpoints.commands import register as _register_endpoint_commands  # noqa: E402

_register_endpoint_commands(app)
from billing.statements.commands import register as _register_statement_commands  # noqa: E402

_register_statement_commands(app)


events_app = typer.Typer(help="Stripe webhook events in the inbox.", no_args_is_help=True)
app.add_typer(events_app, name="events")


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@events_app.command("list")
def events_list(
    failed: Annotated[bool, typer.Option("--failed", help="Only events that gave up.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Newest first, at most this many.")] = 50,
) -> None:
    """Stored events: id, Stripe id, type, status, attempts, received, last error."""
    from billing.db import session_scope
    from webhooks.inbox import list_events

    with session_scope() as session:
        rows = list_events(session, failed_only=failed, limit=limit)
        for row in rows:
            error = (row.last_error or "").replace("\n", " ")[:120]
            typer.echo(
                f"{row.id}\t{row.stripe_event_id}\t{row.type}\t{row.status}\t{row.attempts}\t"
                f"{row.received_at.isoformat(timespec='seconds')}\t{error}"
            )
    if not rows:
        typer.echo("no failed events" if failed else "no events")


@events_app.command("replay")
def events_replay(
    event: Annotated[str | None, typer.Argument(help="Our id or Stripe's evt_ id.")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Replay every event received since (UTC).")
    ] = None,
) -> None:
    """Run events again now: one by id, or all received since a moment (safe: idempotent)."""
    from billing.db import session_scope
    from webhooks.inbox import event_ids_since, find_event_id
    from webhooks.processing import replay

    if (event is None) == (since is None):
        raise typer.BadParameter("give an event id or --since, not both", param_hint="EVENT")
    with session_scope() as session:
        if event is not None:
            event_id = find_event_id(session, event)
            if event_id is None:
                typer.echo(f"no stored event {event}", err=True)
                raise typer.Exit(1)
            event_ids = [event_id]
        else:
            event_ids = event_ids_since(session, _utc(since) or datetime.now(UTC))
    failures = 0
    for event_id in event_ids:
        outcome = replay(event_id)
        failures += outcome.status not in ("handled", "ignored")
        detail = f" ({outcome.error})" if outcome.error else ""
        typer.echo(f"{event_id}\t{outcome.status}{detail}")
        for change in outcome.changes:
            typer.echo(f"  {change}")
    typer.echo(f"replayed {len(event_ids)} event(s), {failures} not handled")
    raise typer.Exit(1 if failures else 0)


@app.command()
def reconcile(
    since: Annotated[
        datetime | None, typer.Option(help="Only pledges and subscriptions created since (UTC).")
    ] = None,
    days: Annotated[
        int, typer.Option(min=1, max=30, help="Days of charges, refunds, disputes to compare.")
    ] = 3,
) -> None:
    """Compare the ledger with Stripe (subscriptions, invoices), repair drift, print changes;
    then check the last DAYS of charges, refunds and disputes, replaying missed events."""
    from billing.stripe_gateway import get_stripe_reader
    from webhooks.drift import check_drift
    from webhooks.reconcile import reconcile as run_reconcile

    changes = run_reconcile(get_stripe_reader(), _utc(since))
    for change in changes:
        typer.echo(change)
    drift = check_drift(get_stripe_reader(), days=days)
    typer.echo(
        f"drift check (run {drift.run_id}, last {days} days): {drift.checked} Stripe charge(s), "
        f"refund(s) and dispute(s) compared, {drift.missing} not in the ledger, "
        f"{drift.replayed} missed event(s) replayed, {len(drift.unexplained)} unexplained: "
        f"{drift.status}"
    )
    for line in drift.unexplained:
        typer.echo(f"  unexplained: {line}")
    if drift.error:
        typer.echo(f"  error: {drift.error}")
    # The subscriptions' verdict stays the last line, as scripts read it.
    typer.echo(f"{len(changes)} change(s)" if changes else "ledger matches Stripe")


@app.command("import")
def import_subscriptions() -> None:
    """Backfill pledges and payments for subscriptions already in Stripe (no emails sent)."""
    from billing.stripe_gateway import get_stripe_reader
    from webhooks.reconcile import import_subscriptions as run_import

    changes = run_import(get_stripe_reader())
    for change in changes:
        typer.echo(change)
    typer.echo(f"{len(changes)} change(s)" if changes else "nothing to import")


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


@app.command()
def status() -> None:
    """The backlog at a glance: inbox and outbox by status, the oldest waiting, pledges."""
    from billing.db import session_scope
    from billing.metrics.queries import read_backlog

    with session_scope() as session:
        backlog = read_backlog(session)

    def line(counts: dict[str, int]) -> str:
        return ", ".join(f"{name} {number}" for name, number in sorted(counts.items())) or "empty"

    typer.echo(f"inbox:   {line(backlog.inbox_by_status)}")
    typer.echo(f"         oldest pending event {backlog.inbox_oldest_pending_seconds:.0f} s old")
    typer.echo(f"outbox:  {line(backlog.outbox_by_status)}")
    typer.echo(f"         oldest unsent email {backlog.outbox_oldest_unsent_seconds:.0f} s old")
    typer.echo(f"pledges: {line(backlog.pledges_by_status)}")
