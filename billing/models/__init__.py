"""The ledger's tables, one module each; importing this package registers them all."""

from billing.models.api_key import ApiKey
from billing.models.cohort_supporter import CohortSupporter
from billing.models.dispute import Dispute
from billing.models.email_outbox import EmailOutbox
from billing.models.giving_statement import GivingStatement
from billing.models.outgoing_event import OutgoingEvent
from billing.models.payment import Payment
from billing.models.payout import Payout, PayoutTransaction
from billing.models.pledge import Pledge, PledgeInterval, PledgeStatus
from billing.models.pledge_history import PledgeHistory
from billing.models.reader import Reader
from billing.models.reconcile_run import ReconcileRun
from billing.models.refund import Refund
from billing.models.revenue_rollup import RevenueRollup
from billing.models.stripe_event import StripeEvent
from billing.models.webhook_delivery import WebhookDelivery
from billing.models.webhook_endpoint import WebhookEndpoint

__all__ = [
    "ApiKey",
    "CohortSupporter",
    "Dispute",
    "EmailOutbox",
    "GivingStatement",
    "OutgoingEvent",
    "Payment",
    "Payout",
    "PayoutTransaction",
    "Pledge",
    "PledgeHistory",
    "PledgeInterval",
    "PledgeStatus",
    "Reader",
    "ReconcileRun",
    "Refund",
    "RevenueRollup",
    "StripeEvent",
    "WebhookDelivery",
    "WebhookEndpoint",
]
