"""Runs localstripe (a stateful fake of the Stripe API) for Storefront's one-machine stack and tests.

What it changes against `localstripe` as shipped, and why:
- it listens on 127.0.0.1 only (as shipped it binds every interface);
- it keeps its store in memory: as shipped it rewrites a pickle of the whole store into the system
  temp folder on every write (10-36 ms a call, and state leaking between runs);
- it fills response fields that real Stripe always sends and async-stripe's typed responses require,
  but localstripe leaves out (PaymentIntent: amount_received, amount_capturable,
  payment_method_types, confirmation_method, livemode, the `type` of last_payment_error; Event:
  pending_webhooks). Only missing fields are added, with the values Stripe would send for that
  state; and `latest_charge` is sent as an id, as Stripe does unless it is expanded;
- it lets `POST /v1/payment_intents/{id}/confirm` take a `payment_method`, as Stripe does (as
  shipped that answers 500 "Not implemented"): the intent takes the new method and, if its last
  charge failed, is payable again, so a customer whose card was declined can pay with another.

Usage: python localstripe_launcher.py --port PORT [--host 127.0.0.1]
                                     [--webhook-url URL --webhook-secret whsec_…]
(`--webhook-url` registers one webhook endpoint at start, as `POST /_config/webhooks/…` would: the
cluster's stand-in is told where payments listens by its manifest, not by a later call.)
"""

import argparse
import os
import logging
import socket

import localstripe.resources as resources
from localstripe.errors import UserError

resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None


def fill_payment_intent(intent, obj, expand):
    status = obj.get("status")
    # Stripe sends the charge's id unless asked to expand it; async-stripe reads an expanded
    # charge as a full Charge, which localstripe's is not.
    charge = obj.get("latest_charge")
    if isinstance(charge, dict) and "latest_charge" not in (expand or []):
        obj["latest_charge"] = charge.get("id")
    error = obj.get("last_payment_error")
    if isinstance(error, dict):
        error.setdefault("type", "card_error")
    amount = obj.get("amount") or 0
    obj.setdefault("amount_received", amount if status == "succeeded" else 0)
    obj.setdefault("amount_capturable", amount if status == "requires_capture" else 0)
    obj.setdefault("payment_method_types", ["card"])
    obj.setdefault("confirmation_method", "automatic")
    obj.setdefault("livemode", False)


def add_defaults(cls, fill):
    original = cls._export

    def _export(self, expand=None):
        obj = original(self, expand=expand)
        fill(self, obj, expand)
        return obj

    cls._export = _export


def fill_event(event, obj, expand):
    obj.setdefault("pending_webhooks", 1)


add_defaults(resources.PaymentIntent, fill_payment_intent)
add_defaults(resources.Event, fill_event)

_confirm = resources.PaymentIntent._api_confirm.__func__


def confirm_with_payment_method(cls, id, payment_method=None, **kwargs):
    if payment_method is not None:
        intent = cls._api_retrieve(id)
        if intent.status not in ("requires_payment_method", "requires_confirmation"):
            raise UserError(400, "payment_intent_unexpected_state: the intent is " + intent.status)
        resources.PaymentMethod._api_retrieve(payment_method)
        intent.payment_method = payment_method
        intent.latest_charge = None
        intent.next_action = None
        intent._authentication_failed = False
    return _confirm(cls, id, **kwargs)


resources.PaymentIntent._api_confirm = classmethod(confirm_with_payment_method)
# The route table holds the method it was built with; point the confirm route at the new one.
resources.extra_apis[:] = [
    (method, url, resources.PaymentIntent._api_confirm
     if url == "/v1/payment_intents/{id}/confirm" else func)
    for method, url, func in resources.extra_apis
]

# Imported last: building the server's routes reads the patched route table.
from aiohttp import web  # noqa: E402
from localstripe import server  # noqa: E402


# The stand-in's Stripe.js leaves createPaymentMethod empty. Stripe.js creates a PaymentMethod from
# the card Element with the publishable key, so give it the same: a route (under /_config/, which
# the stand-in serves without the secret key) that takes the card and a `pk_` key and answers the
# PaymentMethod, and a Stripe.js whose createPaymentMethod calls it.
CREATE_PAYMENT_METHOD_JS = """
    createPaymentMethod: async (data) => {
      const element = data && data.card;
      if (!element || !element.value) {
        return {error: {type: 'validation_error', message: 'Your card number is incomplete.'}};
      }
      const response = await fetch(`${LOCALSTRIPE_BASE_API}/_config/storefront/payment_methods`, {
        method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({key: apiKey, card: element.value.card}),
      });
      const body = await response.json().catch(() => ({}));
      return response.status === 200 ? {paymentMethod: body} : {error: body.error || body};
    },
"""


async def create_payment_method(request):
    data = await request.json()
    key = data.get("key")
    if not (isinstance(key, str) and key.startswith("pk_")):
        return web.json_response({"error": {"message": "a publishable key is needed"}}, status=401)
    card = data.get("card") or {}
    try:
        method = resources.PaymentMethod._api_create(type="card", card={
            "number": str(card.get("number", "")).replace(" ", ""),
            "exp_month": card.get("exp_month"),
            "exp_year": card.get("exp_year"),
            "cvc": str(card.get("cvc", "")),
        })
    except UserError as e:
        return web.json_response(
            {"error": {"type": "card_error", "message": "Your card details are incomplete or invalid."}},
            status=e.code if hasattr(e, "code") else 400)
    return web.json_response(method._export())


async def preflight(request):
    return web.Response(status=204)


async def stripe_js(request):
    path = os.path.join(os.path.dirname(os.path.realpath(server.__file__)), "localstripe-v3.js")
    with open(path) as f:
        text = f.read()
    text = text.replace("    createPaymentMethod: async () => {},\n", CREATE_PAYMENT_METHOD_JS)
    return web.Response(text=text, content_type="application/javascript")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret")
    args = parser.parse_args()
    if args.webhook_url:
        if not args.webhook_secret:
            parser.error("--webhook-url needs --webhook-secret")
        from localstripe.webhooks import register_webhook
        register_webhook("storefront", args.webhook_url, args.webhook_secret, None)
    logging.basicConfig(level=logging.WARNING)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    server.app.router.add_post("/_config/storefront/payment_methods", create_payment_method)
    # The page posts JSON from the shop's origin: the browser asks first (CORS preflight); the
    # stand-in's response hook adds the Access-Control-* headers to every answer.
    server.app.router.add_route("OPTIONS", "/_config/storefront/payment_methods", preflight)
    for route in server.app.router.routes():
        if route.resource is not None and route.resource.canonical == "/js.stripe.com/v3/":
            route._handler = stripe_js
    web.run_app(server.app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
