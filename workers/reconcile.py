"""Nightly drift check of the ledger against Stripe (the same as `pledges reconcile`'s)."""

from billing.settings import get_settings
from billing.stripe_gateway import get_stripe_reader
from webhooks.drift import check_drift
from workers.celery_app import app

DRIFT_TASK = "workers.reconcile.drift_check"


@app.task(name=DRIFT_TASK, acks_late=True)  # type: ignore[untyped-decorator]
def drift_check() -> str:
    """Safe to run twice: replays are keyed by event id, and each run is its own record."""
    return check_drift(get_stripe_reader(), days=get_settings().drift_check_days).status
