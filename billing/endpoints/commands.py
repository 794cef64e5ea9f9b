"""`pledges endpoints …`: the newsroom's webhook endpoints, their deliveries and replays."""

from datetime import UTC, datetime
from typing import Annotated

import typer

endpoints_app = typer.Typer(
    help="Outgoing webhooks to the newsroom's own systems (CRM, newsletter, paywall).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(endpoints_app, name="endpoints")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@endpoints_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where to POST the events (https://…).")],
    events: Annotated[
        str, typer.Option(help="Comma-separated event types or patterns, e.g. pledge.*,payment.*")
    ] = "*",
    personal_data: Annotated[
        bool, typer.Option("--personal-data", help="Include readers' email and name.")
    ] = False,
    description: Annotated[str | None, typer.Option(help="What this endpoint is.")] = None,
) -> None:
    """Add an endpoint and print its signing secret, alone on the last line; shown once."""
    from billing.db import session_scope
    from billing.endpoints.service import EndpointError, add_endpoint
    from billing.settings import get_settings

    try:
        with session_scope() as session:
            created = add_endpoint(
                session, get_settings(), url=url, event_types=events,
                personal_data=personal_data, description=description,
            )  # fmt: skip
            endpoint_id, patterns = created.endpoint.id, created.endpoint.event_types
    except EndpointError as error:
        raise _fail(error.message) from None
    typer.echo(
        f"added endpoint {endpoint_id} for {', '.join(patterns)}; "
        "store its signing secret now, it is shown once:"
    )
    typer.echo(created.secret)


@endpoints_app.command("list")
def list_() -> None:
    """Every endpoint: id, status, URL, events, personal data, why it was disabled."""
    from billing.db import session_scope
    from billing.endpoints.service import list_endpoints

    with session_scope() as session:
        rows = list_endpoints(session)
        for row in rows:
            personal = "personal-data" if row.personal_data else "ids-only"
            typer.echo(
                f"{row.id}\t{row.status}\t{row.url}\t{','.join(row.event_types)}\t{personal}\t"
                f"{row.disabled_reason or ''}"
            )
    if not rows:
        typer.echo("no endpoints")


@endpoints_app.command("disable")
def disable(endpoint_id: Annotated[int, typer.Argument(help="The id from `list`.")]) -> None:
    """Stop delivering to an endpoint; what happens meanwhile waits for `enable`."""
    from billing.db import session_scope
    from billing.endpoints.service import EndpointError, disable_endpoint

    try:
        with session_scope() as session:
            disable_endpoint(session, endpoint_id=endpoint_id)
    except EndpointError as error:
        raise _fail(error.message) from None
    typer.echo(f"endpoint {endpoint_id} disabled")


@endpoints_app.command("enable")
def enable(endpoint_id: Annotated[int, typer.Argument(help="The id from `list`.")]) -> None:
    """Deliver to an endpoint again, starting with what waited while it was disabled."""
    from billing.db import session_scope
    from billing.endpoints.service import EndpointError, enable_endpoint
    from billing.settings import get_settings

    try:
        with session_scope() as session:
            enable_endpoint(session, get_settings(), endpoint_id=endpoint_id)
    except EndpointError as error:
        raise _fail(error.message) from None
    typer.echo(f"endpoint {endpoint_id} enabled")


@endpoints_app.command("rotate-secret")
def rotate_secret(endpoint_id: Annotated[int, typer.Argument(help="The id from `list`.")]) -> None:
    """A new signing secret, printed alone on the last line; the old one signs too for a while."""
    from billing.db import session_scope
    from billing.endpoints.service import EndpointError
    from billing.endpoints.service import rotate_secret as rotate
    from billing.settings import get_settings

    settings = get_settings()
    try:
        with session_scope() as session:
            rotated = rotate(session, settings, endpoint_id=endpoint_id)
    except EndpointError as error:
        raise _fail(error.message) from None
    typer.echo(
        f"endpoint {endpoint_id} has a new secret; the old one stays valid for "
        f"{settings.outgoing_webhook_secret_overlap_hours:g} h. Store it now, it is shown once:"
    )
    typer.echo(rotated.secret)


@endpoints_app.command("remove")
def remove(endpoint_id: Annotated[int, typer.Argument(help="The id from `list`.")]) -> None:
    """Delete an endpoint and its delivery log."""
    from billing.db import session_scope
    from billing.endpoints.service import EndpointError, remove_endpoint

    try:
        with session_scope() as session:
            remove_endpoint(session, endpoint_id=endpoint_id)
    except EndpointError as error:
        raise _fail(error.message) from None
    typer.echo(f"endpoint {endpoint_id} removed")


@endpoints_app.command("deliveries")
def deliveries(
    endpoint_id: Annotated[int, typer.Argument(help="The id from `list`.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest first, at most.")] = 50,
) -> None:
    """The delivery log: id, event, type, status, attempts, last HTTP status, time, answer."""
    from billing.db import session_scope
    from billing.endpoints.service import EndpointError, delivery_log

    try:
        with session_scope() as session:
            rows = delivery_log(session, endpoint_id=endpoint_id, limit=limit)
            for delivery, event in rows:
                answer = (delivery.last_response or delivery.last_error or "").replace("\n", " ")
                took = f"{delivery.last_duration_ms} ms" if delivery.last_duration_ms else "-"
                typer.echo(
                    f"{delivery.id}\t{event.event_id}\t{event.type}\t{delivery.status}\t"
                    f"{delivery.attempts}\t{delivery.last_status_code or '-'}\t{took}\t"
                    f"{answer[:80]}"
                )
    except EndpointError as error:
        raise _fail(error.message) from None
    if not rows:
        typer.echo("no deliveries")


@endpoints_app.command("replay")
def replay(
    endpoint_id: Annotated[int, typer.Argument(help="The id from `list`.")],
    since: Annotated[datetime, typer.Option(help="Every event since this moment (UTC if naive).")],
) -> None:
    """Deliver again every subscribed event since a moment, each under its own webhook-id."""
    from billing.db import session_scope
    from billing.endpoints.service import EndpointError
    from billing.endpoints.service import replay as replay_events

    moment = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    try:
        with session_scope() as session:
            count = replay_events(session, endpoint_id=endpoint_id, since=moment)
    except EndpointError as error:
        raise _fail(error.message) from None
    typer.echo(f"queued {count} event(s) for endpoint {endpoint_id}")
