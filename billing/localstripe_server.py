"""localstripe for development and tests: bound to 127.0.0.1 only, state in memory only.

localstripe's own entry point binds every interface and pickles its state to /tmp; neither is
acceptable on a shared machine, so this starts its aiohttp app directly. It also teaches
localstripe the parts of Stripe's current API that our one flow uses and it lacks, so the
service itself never branches on which Stripe it talks to:
- a subscription's own `default_payment_method` (create and update), which pays its invoices
  ahead of the customer's default;
- `pause_collection` on a subscription (set, and cleared with an empty value), shown as
  Stripe shows it; like every clock-driven thing in localstripe, it never resumes by itself;
- a canceled or succeeded SetupIntent cannot be confirmed again (localstripe re-opens it);
- Stripe.js's `createPaymentMethod` (a stub in localstripe's stand-in) and `handleNextAction`,
  the 3-D Secure step for an intent the server confirmed.
"""

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from localstripe import resources

BROWSER_STRIPE_EXTENSION = """
(function () {
  const localStripe = Stripe;
  Stripe = (apiKey) => {
    const stripe = localStripe(apiKey);
    const post = async (path, body) => {
      const response = await fetch(LOCALSTRIPE_BASE_API + path, {
        method: 'POST', body: JSON.stringify({key: apiKey, ...body}),
      });
      const json = await response.json().catch(() => ({}));
      if (response.status !== 200 || json.error) {
        return {error: json.error || {message: 'request failed'}};
      }
      return {body: json};
    };
    stripe.createPaymentMethod = async (options) => {
      const card = options.card.value.card;
      const {body, error} = await post('/js.stripe.com/v3/payment_methods', {
        type: 'card', card: card, billing_details: options.billing_details || {},
      });
      return error ? {error} : {paymentMethod: body};
    };
    stripe.handleNextAction = async ({clientSecret}) => {
      const success = await openModal('3D Secure\\nDo you want to confirm or cancel?',
                                      'Complete authentication', 'Fail authentication');
      const setup = clientSecret.match(/^(seti_\\w+)_secret_/);
      if (setup) {
        const {body, error} = await post(
          `/v1/setup_intents/${setup[1]}/${success ? 'confirm' : 'cancel'}`,
          {client_secret: clientSecret, use_stripe_sdk: true});
        if (error) return {error};
        if (body.status === 'succeeded') return {setupIntent: body};
        return {error: {code: 'authentication_failed',
                        message: 'Authentication failed.', setup_intent: body}};
      }
      const payment = clientSecret.match(/^(pi_\\w+)_secret_/)[1];
      const {body, error} = await post(
        `/v1/payment_intents/${payment}/_authenticate?success=${success}`,
        {client_secret: clientSecret});
      if (error) return {error};
      if (body.status === 'succeeded') return {paymentIntent: body};
      return {error: {code: 'authentication_failed',
                      message: 'Authentication failed.', payment_intent: body}};
    };
    return stripe;
  };
})();
"""


def _teach_subscription_default_payment_method() -> None:
    subscription = resources.Subscription
    original_init = subscription.__init__
    original_update = subscription._update
    original_pay = resources.Invoice._api_pay_invoice

    def init(
        self: Any, *args: Any, default_payment_method: str | None = None, **kwargs: Any
    ) -> None:
        if default_payment_method is not None:
            resources.PaymentMethod._api_retrieve(default_payment_method)
        # Set before localstripe's constructor, which pays the first invoice.
        self.default_payment_method = default_payment_method
        self.pause_collection = None
        original_init(self, *args, **kwargs)

    def update(
        self: Any,
        default_payment_method: str | None = None,
        pause_collection: Any = None,
        **data: Any,
    ) -> None:
        if default_payment_method is not None:
            resources.PaymentMethod._api_retrieve(default_payment_method)
            self.default_payment_method = default_payment_method
        if pause_collection == "":
            self.pause_collection = None
        elif pause_collection is not None:
            behavior = pause_collection.get("behavior")
            if behavior not in ("void", "keep_as_draft", "mark_uncollectible"):
                raise resources.UserError(400, "Invalid pause_collection[behavior]")
            resumes_at = pause_collection.get("resumes_at")
            self.pause_collection = {
                "behavior": behavior,
                "resumes_at": int(resumes_at) if resumes_at else None,
            }
        if data:
            original_update(self, **data)

    def pay_invoice(cls: Any, id: str) -> Any:
        invoice = resources.Invoice._api_retrieve(id)
        owner = resources.store.get(f"subscription:{invoice.subscription}")
        card = getattr(owner, "default_payment_method", None)
        if not card:
            return original_pay(id)
        customer = resources.Customer._api_retrieve(invoice.customer)
        settings = customer.invoice_settings
        saved = settings.get("default_payment_method")
        settings["default_payment_method"] = card
        try:
            return original_pay(id)
        finally:
            settings["default_payment_method"] = saved

    subscription.__init__ = init
    subscription._update = update
    _replace_api(resources.Invoice, "_api_pay_invoice", pay_invoice)


def _teach_setup_intents_to_stay_ended() -> None:
    """Stripe refuses to confirm a canceled or succeeded SetupIntent; localstripe re-opens it."""
    original_confirm = resources.SetupIntent._api_confirm

    def confirm(cls: Any, id: str, **data: Any) -> Any:
        status = resources.SetupIntent._api_retrieve(id).status
        if status in ("canceled", "succeeded"):
            raise resources.UserError(
                400, f"You cannot confirm this SetupIntent because it has a status of {status}."
            )
        return original_confirm(id, **data)

    _replace_api(resources.SetupIntent, "_api_confirm", confirm)


def _replace_api(cls: Any, name: str, function: Callable[..., Any]) -> None:
    """Swap a class method, including where localstripe's route table already holds it."""
    original = getattr(cls, name)
    setattr(cls, name, classmethod(function))
    resources.extra_apis[:] = [
        (method, url, getattr(cls, name) if func == original else func)
        for method, url, func in resources.extra_apis
    ]


async def _create_payment_method(request: web.Request) -> web.Response:
    """What Stripe.js does with a publishable key: turn card details into a PaymentMethod."""
    data = await request.json()
    if not str(data.pop("key", "")).startswith("pk_"):
        raise resources.UserError(401, "Unauthorized")
    payment_method = resources.PaymentMethod(**data)
    return web.json_response(payment_method._export())


def build_app() -> web.Application:
    _teach_subscription_default_payment_method()
    _teach_setup_intents_to_stay_ended()
    from localstripe import server  # registers its routes from resources.extra_apis on import

    original_js = Path(server.__file__).with_name("localstripe-v3.js").read_text()

    @web.middleware
    async def extended_stripe_js(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/js.stripe.com/v3/":
            return web.Response(
                text=original_js + BROWSER_STRIPE_EXTENSION, content_type="application/javascript"
            )
        return await handler(request)

    server.app.middlewares.insert(1, extended_stripe_js)
    server.app.router.add_post("/js.stripe.com/v3/payment_methods", _create_payment_method)
    app: web.Application = server.app
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    resources.Store.dump_to_disk = lambda self: None
    web.run_app(build_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
