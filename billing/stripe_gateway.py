"""The one module that talks to Stripe: pinned API version, our idempotency keys, plain results."""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import stripe
from stripe.params import CustomerCreateParams

from billing.i18n import Message
from billing.metrics.registry import stripe_call
from billing.settings import Settings, get_settings

API_VERSION = "2026-10-28.endive"

# Stripe's decline codes in words a reader can act on (https://docs.stripe.com/declines/codes).
# They are stored as a pledge's failure reason in English and translated when shown.
DECLINE_MESSAGES = {
    "insufficient_funds": Message("Your card has insufficient funds. Please try another card."),
    "expired_card": Message("Your card has expired. Please use another card."),
    "incorrect_cvc": Message(
        "The security code (CVC) is incorrect. Please check it and try again."
    ),
    "incorrect_number": Message("The card number is incorrect. Please check it and try again."),
    "processing_error": Message(
        "Your bank could not process the payment. Please try again in a moment."
    ),
    "authentication_required": Message("Your bank asks you to confirm this payment."),
    "lost_card": Message("Your card was declined. Please use another card."),
    "stolen_card": Message("Your card was declined. Please use another card."),
    "card_not_supported": Message(
        "This card does not support this kind of payment. Please use another."
    ),
}
GENERIC_DECLINE = Message("Your card was declined. Please try another card or contact your bank.")


class GatewayError(Exception):
    """Stripe could not be reached or failed; the same call with the same key is safe to retry."""


class CardDeclined(Exception):
    def __init__(self, reason: str, code: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class NotFoundInStripe(Exception):
    pass


@dataclass(frozen=True)
class SetupIntentState:
    id: str
    status: str
    client_secret: str
    payment_method_id: str | None
    # The card our server checked and sent; another one there means the 3-D Secure secret was
    # used to swap cards behind our back.
    vetted_payment_method_id: str | None = None

    @property
    def card_ready(self) -> bool:
        return (
            self.status == "succeeded"
            and self.payment_method_id is not None
            and self.payment_method_id == self.vetted_payment_method_id
        )


@dataclass(frozen=True)
class CardInfo:
    id: str
    customer_id: str | None
    fingerprint: str | None
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class CardSummary:
    """How a mail names a card, and when it runs out."""

    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


@dataclass(frozen=True)
class ChargeOutcome:
    """What a reader's confirm leads to: paid, waiting for 3-D Secure, or refused."""

    status: Literal["active", "requires_action", "failed"]
    stripe_id: str
    client_secret: str | None = None
    failure_reason: str | None = None
    failure_code: str | None = None


def reader_reason(code: str | None, decline_code: str | None = None) -> str:
    return DECLINE_MESSAGES.get(
        decline_code or "", DECLINE_MESSAGES.get(code or "", GENERIC_DECLINE)
    )


def plan_id_for(amount_minor: int, currency: str, interval: str) -> str:
    """Deterministic, so every pledge of the same shape shares one Plan in Stripe."""
    return f"pledge-{currency}-{amount_minor}-{interval}"


def stripe_client(api_key: str, api_base: str | None = None) -> stripe.StripeClient:
    """A client on the pinned API version whose threads share one pool of kept-alive
    connections. httpx reads the proxy settings from the environment once; requests, stripe's
    default, reads every environment variable again on each call, which cost more than the
    rest of our side of a call."""
    base_addresses: dict[str, str] = {}
    if api_base:
        base_addresses = {"api": api_base, "files": api_base}
    return stripe.StripeClient(
        api_key,
        stripe_version=API_VERSION,
        base_addresses=base_addresses,  # type: ignore[arg-type]
        max_network_retries=2,
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
    )


class StripeGateway:
    def __init__(self, settings: Settings) -> None:
        self._client = stripe_client(
            settings.stripe_api_key.get_secret_value(), settings.stripe_api_base
        )
        self._known_plans: set[str] = set()

    def create_customer(self, *, email: str, name: str | None, locale: str, reader_id: str) -> str:
        params: CustomerCreateParams = {
            "email": email,
            "preferred_locales": [locale],
            "metadata": {"reader_id": reader_id},
        }
        if name:
            params["name"] = name
        customer = self._call(
            self._client.v1.customers.create,
            params=params,
            options={"idempotency_key": f"reader:{reader_id}:customer"},
        )
        return str(customer.id)

    def payment_method_card(self, payment_method_id: str) -> CardInfo:
        """Who owns the card and its fingerprint, read before the card is used for anything."""
        payment_method = self._call(self._client.v1.payment_methods.retrieve, payment_method_id)
        card = payment_method.card
        if payment_method.type != "card" or card is None:
            raise CardDeclined(Message("Please pay with a card."), "payment_method_type")
        customer = payment_method.customer
        return CardInfo(
            id=payment_method.id,
            customer_id=customer if isinstance(customer, str) or customer is None else customer.id,
            fingerprint=str(card.fingerprint) if card.fingerprint else None,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

    def confirm_setup(
        self, *, customer_id: str, payment_method_id: str, pledge_id: str, purpose: str
    ) -> SetupIntentState:
        """Save a card for off-session use, confirmed here so no browser ever confirms a card.

        A decline raises CardDeclined; a card that asks for 3-D Secure comes back
        `requires_action`, and its client secret is the only one a browser ever receives.
        """
        setup_intent = self._call(
            self._client.v1.setup_intents.create,
            params={
                "customer": customer_id,
                "payment_method_types": ["card"],
                "usage": "off_session",
                "metadata": {
                    "pledge_id": pledge_id,
                    "purpose": purpose,
                    "payment_method": payment_method_id,
                },
            },
            options={"idempotency_key": f"pledge:{pledge_id}:{purpose}:{payment_method_id}"},
        )
        if setup_intent.status in ("requires_payment_method", "requires_confirmation"):
            setup_intent = self._call(
                self._client.v1.setup_intents.confirm,
                setup_intent.id,
                params={"payment_method": payment_method_id},
            )
        return _setup_intent_state(setup_intent)

    def retrieve_setup_intent(self, setup_intent_id: str) -> SetupIntentState:
        return _setup_intent_state(
            self._call(self._client.v1.setup_intents.retrieve, setup_intent_id)
        )

    def cancel_setup_intent(self, setup_intent_id: str) -> None:
        """End an intent whose card failed, so its client secret confirms nothing more."""
        with contextlib.suppress(NotFoundInStripe, GatewayError):
            self._call(self._client.v1.setup_intents.cancel, setup_intent_id)

    def cancel_payment_intent(self, payment_intent_id: str) -> None:
        with contextlib.suppress(NotFoundInStripe, GatewayError):
            self._call(self._client.v1.payment_intents.cancel, payment_intent_id)

    def attach_card(self, *, customer_id: str, payment_method_id: str) -> None:
        # Real Stripe attaches the card when the SetupIntent names a customer; localstripe does
        # not, and attaching an attached card to the same customer is a no-op on both: one
        # call either way, rather than reading the card first.
        self._call(
            self._client.v1.payment_methods.attach,
            payment_method_id,
            params={"customer": customer_id},
        )

    def pay_subscription_with(self, *, subscription_id: str, payment_method_id: str) -> None:
        """The card that pays this one subscription, whatever the customer's default is."""
        self._call(
            self._client.v1.subscriptions.update,
            subscription_id,
            params={"default_payment_method": payment_method_id},
        )

    def ensure_plan(self, *, amount_minor: int, currency: str, interval: str) -> str:
        plan_id = plan_id_for(amount_minor, currency, interval)
        # Plans are never changed or deleted by us: one seen here once is not asked about again
        # by this process (start_subscription forgets it if Stripe says otherwise).
        if plan_id in self._known_plans:
            return plan_id
        try:
            self._call(self._client.v1.plans.retrieve, plan_id)
            self._known_plans.add(plan_id)
            return plan_id
        except NotFoundInStripe:
            pass
        try:
            self._call(
                self._client.v1.plans.create,
                params={
                    "id": plan_id,
                    "amount": amount_minor,
                    "currency": currency,
                    "interval": "year" if interval == "year" else "month",
                    "product": {
                        "name": "Yearly pledge" if interval == "year" else "Monthly pledge"
                    },
                },
                options={"idempotency_key": f"plan:{plan_id}"},
            )
        except GatewayError:
            # Another request created it between our retrieve and create.
            self._call(self._client.v1.plans.retrieve, plan_id)
        self._known_plans.add(plan_id)
        return plan_id

    def start_subscription(
        self, *, customer_id: str, plan_id: str, payment_method_id: str, pledge_id: str
    ) -> ChargeOutcome:
        # The pledge's own card pays it: an unverified pledge under a known email must never
        # become the card of the reader's other pledges (no customer-wide default).
        try:
            subscription = self._call(
                self._client.v1.subscriptions.create,
                params={
                    "customer": customer_id,
                    "items": [{"plan": plan_id}],
                    "default_payment_method": payment_method_id,
                    "metadata": {"pledge_id": pledge_id},
                    "expand": ["latest_invoice"],
                },
                options={"idempotency_key": f"pledge:{pledge_id}:subscription:{payment_method_id}"},
            )
        except NotFoundInStripe:
            self._known_plans.discard(plan_id)  # deleted in the dashboard: ask again next time
            raise
        return self._subscription_outcome(subscription)

    def subscription_outcome(self, subscription_id: str) -> ChargeOutcome:
        subscription = self._call(
            self._client.v1.subscriptions.retrieve,
            subscription_id,
            params={"expand": ["latest_invoice"]},
        )
        return self._subscription_outcome(subscription)

    def cancel_subscription(self, subscription_id: str) -> None:
        with contextlib.suppress(NotFoundInStripe):
            self._call(self._client.v1.subscriptions.cancel, subscription_id)

    def charge_once(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount_minor: int,
        currency: str,
        pledge_id: str,
    ) -> ChargeOutcome:
        try:
            with stripe_call("PaymentIntent.create"):
                payment_intent = self._client.v1.payment_intents.create(
                    params={
                        "amount": amount_minor,
                        "currency": currency,
                        "customer": customer_id,
                        "payment_method": payment_method_id,
                        "confirm": True,
                        "off_session": True,
                        "metadata": {"pledge_id": pledge_id},
                    },
                    options={
                        "idempotency_key": f"pledge:{pledge_id}:payment_intent:{payment_method_id}"
                    },
                )
        except stripe.CardError as error:
            failed_intent = error.error.payment_intent if error.error else None
            if failed_intent is not None and failed_intent.status == "requires_action":
                return ChargeOutcome(
                    "requires_action", failed_intent.id, client_secret=failed_intent.client_secret
                )
            return ChargeOutcome(
                "failed",
                failed_intent.id if failed_intent is not None else "",
                failure_reason=reader_reason(error.code, _decline_code(error)),
                failure_code=_decline_code(error) or error.code,
            )
        except stripe.StripeError as error:
            raise _gateway_error(error) from error
        return _payment_intent_outcome(payment_intent)

    def payment_intent_outcome(self, payment_intent_id: str) -> ChargeOutcome:
        return _payment_intent_outcome(
            self._call(self._client.v1.payment_intents.retrieve, payment_intent_id)
        )

    def _subscription_outcome(self, subscription: stripe.Subscription) -> ChargeOutcome:
        if subscription.status in ("active", "trialing"):
            return ChargeOutcome("active", subscription.id)
        invoice = subscription.latest_invoice
        if subscription.status == "incomplete" and isinstance(invoice, stripe.Invoice):
            secret, status, error = self._first_invoice_payment(str(invoice.id))
            if status == "requires_action" and secret:
                return ChargeOutcome("requires_action", subscription.id, client_secret=secret)
            code = error.get("decline_code") or error.get("code")
            return ChargeOutcome(
                "failed",
                subscription.id,
                failure_reason=reader_reason(error.get("code"), error.get("decline_code")),
                failure_code=code,
            )
        return ChargeOutcome(
            "failed",
            subscription.id,
            failure_reason=GENERIC_DECLINE,
            failure_code=subscription.status,
        )

    def _first_invoice_payment(self, invoice_id: str) -> tuple[str | None, str, dict[str, Any]]:
        """(client secret, payment status, last error) of a subscription's first invoice.

        The one place that differs between Stripe and localstripe: current Stripe exposes the
        PaymentIntent only through `confirmation_secret` (no `payment_intent` field), localstripe
        only as `payment_intent` and refuses to expand the former.
        """
        try:
            with stripe_call("Invoice.retrieve"):
                invoice = self._client.v1.invoices.retrieve(
                    invoice_id, params={"expand": ["confirmation_secret"]}
                )
        except stripe.InvalidRequestError:
            document = self._call(
                self._client.v1.invoices.retrieve, invoice_id, params={"expand": ["payment_intent"]}
            ).to_dict()
            intent: dict[str, Any] = document.get("payment_intent") or {}
        except stripe.StripeError as error:
            raise _gateway_error(error) from error
        else:
            secret = (invoice.to_dict().get("confirmation_secret") or {}).get("client_secret")
            if not secret:
                return None, "requires_payment_method", {}
            # The secret is "<payment intent id>_secret_<…>".
            payment_intent_id = secret.split("_secret_")[0]
            intent = self._call(
                self._client.v1.payment_intents.retrieve, payment_intent_id
            ).to_dict()
        return (
            intent.get("client_secret"),
            intent.get("status", "requires_payment_method"),
            intent.get("last_payment_error") or {},
        )

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with stripe_call(_operation(method)):
                return method(*args, **kwargs)
        except stripe.StripeError as error:
            raise _gateway_error(error) from error

    def switch_plan(self, *, subscription_id: str, plan_id: str, change_id: str) -> None:
        """Move the subscription's one item to another Plan (a new amount or interval)."""
        subscription = self._call(self._client.v1.subscriptions.retrieve, subscription_id)
        item_id = subscription["items"].data[0].id
        self._call(
            self._client.v1.subscriptions.update,
            subscription_id,
            params={"items": [{"id": item_id, "plan": plan_id}]},
            options={"idempotency_key": f"subscription:{subscription_id}:change:{change_id}"},
        )

    def pause_collection(self, *, subscription_id: str, resumes_at: int) -> None:
        """Skip invoices until `resumes_at` (epoch seconds); Stripe resumes by itself."""
        self._call(
            self._client.v1.subscriptions.update,
            subscription_id,
            params={"pause_collection": {"behavior": "void", "resumes_at": resumes_at}},
        )

    def setup_intent_owner(self, setup_intent_id: str) -> tuple[str | None, str | None]:
        """(customer id, pledge id in metadata) of a SetupIntent, to check who may use it."""
        setup_intent = self._call(self._client.v1.setup_intents.retrieve, setup_intent_id)
        customer = setup_intent.customer
        customer_id = customer if isinstance(customer, str) or customer is None else customer.id
        metadata: dict[str, Any] = setup_intent.to_dict().get("metadata") or {}
        return customer_id, metadata.get("pledge_id")

    def card_summary(self, payment_method_id: str) -> CardSummary:
        """Brand and last four digits to name the card in a confirmation, and its expiry."""
        payment_method = self._call(self._client.v1.payment_methods.retrieve, payment_method_id)
        card = payment_method.card
        if card is None:
            return CardSummary("card", "", None, None)
        return CardSummary(str(card.brand), str(card.last4), card.exp_month, card.exp_year)

    def payment_intent_card(self, payment_intent_id: str) -> str | None:
        """The PaymentMethod that paid a gift, for gifts saved before pledges kept their card."""
        payment_intent = self._call(self._client.v1.payment_intents.retrieve, payment_intent_id)
        method = payment_intent.payment_method
        return method if isinstance(method, str) or method is None else method.id

    def delete_customer(self, customer_id: str) -> None:
        """Stripe keeps the payments it must; the customer's contact details go."""
        with contextlib.suppress(NotFoundInStripe):
            self._call(self._client.v1.customers.delete, customer_id)


def _operation(method: Any) -> str:
    """`Customer.create` for `client.v1.customers.create`: the metric label of a call."""
    service = type(getattr(method, "__self__", None)).__name__.removesuffix("Service")
    return f"{service}.{getattr(method, '__name__', 'call')}"


def _gateway_error(error: stripe.StripeError) -> Exception:
    if isinstance(error, stripe.CardError):
        return CardDeclined(reader_reason(error.code, _decline_code(error)), _decline_code(error))
    if error.http_status == 404 or (error.code == "resource_missing"):
        return NotFoundInStripe(str(error))
    return GatewayError(f"{type(error).__name__}: {error.user_message or error}")


def _decline_code(error: stripe.CardError) -> str | None:
    return error.error.decline_code if error.error and error.error.decline_code else error.code


def _setup_intent_state(setup_intent: stripe.SetupIntent) -> SetupIntentState:
    payment_method = setup_intent.payment_method
    metadata: dict[str, Any] = setup_intent.to_dict().get("metadata") or {}
    return SetupIntentState(
        id=setup_intent.id,
        status=setup_intent.status,
        client_secret=setup_intent.client_secret or "",
        payment_method_id=payment_method
        if isinstance(payment_method, str)
        else (payment_method.id if payment_method is not None else None),
        vetted_payment_method_id=metadata.get("payment_method"),
    )


def _payment_intent_outcome(payment_intent: stripe.PaymentIntent) -> ChargeOutcome:
    if payment_intent.status == "succeeded":
        return ChargeOutcome("active", payment_intent.id)
    if payment_intent.status == "requires_action":
        return ChargeOutcome(
            "requires_action", payment_intent.id, client_secret=payment_intent.client_secret
        )
    error = payment_intent.last_payment_error
    code = error.code if error else None
    decline_code = error.decline_code if error else None
    return ChargeOutcome(
        "failed",
        payment_intent.id,
        failure_reason=reader_reason(code, decline_code),
        failure_code=decline_code or code or payment_intent.status,
    )


@lru_cache
def get_gateway() -> StripeGateway:
    return StripeGateway(get_settings())


class StripeReader:
    """Current state of the objects a webhook names, read back from Stripe as plain dicts.

    Order-independent webhook handling and reconcile ask Stripe "what is true now" instead of
    trusting the order events arrive in.
    """

    def __init__(self, gateway: StripeGateway) -> None:
        self._gateway = gateway
        self._client = gateway._client

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._document(self._client.v1.subscriptions.retrieve, subscription_id)

    # The writes a webhook handler makes: ending an intent whose card failed.
    def cancel_setup_intent(self, setup_intent_id: str) -> None:
        self._gateway.cancel_setup_intent(setup_intent_id)

    def cancel_payment_intent(self, payment_intent_id: str) -> None:
        self._gateway.cancel_payment_intent(payment_intent_id)

    def customer(self, customer_id: str) -> dict[str, Any]:
        return self._document(self._client.v1.customers.retrieve, customer_id)

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._document(self._client.v1.invoices.retrieve, invoice_id)

    def charge(self, charge_id: str) -> dict[str, Any]:
        return self._document(self._client.v1.charges.retrieve, charge_id)

    def fee_and_net(self, charge_id: str) -> tuple[int, int] | None:
        """Stripe's fee and what the newsroom keeps, once the charge has a balance transaction."""
        charge = self._document(
            self._client.v1.charges.retrieve,
            charge_id,
            params={"expand": ["balance_transaction"]},
        )
        transaction = charge.get("balance_transaction")
        if not isinstance(transaction, dict):
            return None
        return int(transaction.get("fee") or 0), int(transaction["net"])

    def latest_charge(self, payment_intent_id: str) -> str | None:
        """The charge that settled a PaymentIntent (current invoices name only the intent)."""
        payment_intent = self._document(self._client.v1.payment_intents.retrieve, payment_intent_id)
        charge = payment_intent.get("latest_charge")
        if isinstance(charge, dict):
            return str(charge["id"])
        return str(charge) if charge else None

    def subscriptions(self) -> Iterator[dict[str, Any]]:
        """Every subscription in the account, canceled ones too, a page at a time."""
        page = self._gateway._call(
            self._client.v1.subscriptions.list, params={"status": "all", "limit": 100}
        )
        return self._each(page)

    def invoices(self, subscription_id: str) -> Iterator[dict[str, Any]]:
        page = self._gateway._call(
            self._client.v1.invoices.list,
            params={"subscription": subscription_id, "limit": 100},
        )
        return self._each(page)

    def refunds(self, charge_id: str) -> list[dict[str, Any]]:
        page = self._gateway._call(
            self._client.v1.refunds.list, params={"charge": charge_id, "limit": 100}
        )
        return [item.to_dict() for item in page.auto_paging_iter()]

    def payout(self, payout_id: str) -> dict[str, Any]:
        return self._document(self._client.v1.payouts.retrieve, payout_id)

    def payout_transactions(self, payout_id: str) -> Iterator[dict[str, Any]]:
        """The balance transactions a payout paid out (Stripe lists them for automatic payouts)."""
        page = self._gateway._call(
            self._client.v1.balance_transactions.list,
            params={"payout": payout_id, "limit": 100},
        )
        return self._each(page)

    # Drift check: what Stripe holds since a moment, to compare with the ledger.
    def charges_since(self, since: int) -> Iterator[dict[str, Any]]:
        page = self._gateway._call(
            self._client.v1.charges.list, params={"created": {"gte": since}, "limit": 100}
        )
        return self._each(page)

    def refunds_since(self, since: int) -> Iterator[dict[str, Any]]:
        page = self._gateway._call(
            self._client.v1.refunds.list, params={"created": {"gte": since}, "limit": 100}
        )
        return self._each(page)

    def disputes_since(self, since: int) -> Iterator[dict[str, Any]]:
        page = self._gateway._call(
            self._client.v1.disputes.list, params={"created": {"gte": since}, "limit": 100}
        )
        return self._each(page)

    def events_since(self, since: int) -> Iterator[dict[str, Any]]:
        """Stripe keeps events for 30 days; older drift can only be reported, not replayed."""
        page = self._gateway._call(
            self._client.v1.events.list, params={"created": {"gte": since}, "limit": 100}
        )
        return self._each(page)

    def _each(self, page: Any) -> Iterator[dict[str, Any]]:
        """Items across pages, with later pages' errors mapped like every other call."""
        items = page.auto_paging_iter()
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            except stripe.StripeError as error:
                raise _gateway_error(error) from error
            yield item.to_dict()

    def _document(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        document: dict[str, Any] = self._gateway._call(method, *args, **kwargs).to_dict()
        return document


def get_stripe_reader() -> StripeReader:
    return StripeReader(get_gateway())
