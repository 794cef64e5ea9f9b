"""`pledges apikey list|revoke` and `pledges report ...`: finance on the command line."""

from typing import Annotated

import typer

from billing.reports.terminal import FORMATS, REPORTS

report_app = typer.Typer(
    help="Finance reports, as on the dashboard and the API.", no_args_is_help=True
)


def register(app: typer.Typer, apikey_app: typer.Typer) -> None:
    """Add the key and report commands to the `pledges` command."""
    apikey_app.command("list")(apikey_list)
    apikey_app.command("revoke")(apikey_revoke)
    app.add_typer(report_app, name="report")


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
        from billing.reports.terminal import render
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

    command.__doc__ = f"The {name} report (see docs/reports.md for every figure)."
    report_app.command(name)(command)


for _name in REPORTS:
    _report_command(_name)
