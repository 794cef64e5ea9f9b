"""`pledges statements send`: mail every reader last fiscal year's giving statement, once."""

from typing import Annotated

import typer

statements_app = typer.Typer(help="Annual giving statements.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(statements_app, name="statements")


@statements_app.command("send")
def statements_send(
    year: Annotated[
        int | None, typer.Option(help="Fiscal year; the last finished one by default.")
    ] = None,
) -> None:
    """Queue one statement mail per reader with payments in YEAR; a rerun queues only missing ones.

    The mails go out through the outbox (PDF attached, rendered at send time) and are kept to
    one per reader and year by the key statement:<reader>:<year>.
    """
    from billing.db import session_scope
    from billing.settings import get_settings
    from billing.statements.service import StatementError, last_complete_year, queue_statements

    settings = get_settings()
    chosen = year if year is not None else last_complete_year(settings).year
    try:
        with session_scope() as session:
            result = queue_statements(session, settings, year=chosen)
    except StatementError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(1) from error
    typer.echo(
        f"fiscal year {chosen}: {result.queued} statements queued, "
        f"{result.already_queued} queued before"
    )
