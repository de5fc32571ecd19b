"""Runs localstripe (a stateful fake of the Stripe API) for Storefront's one-machine stack and tests.

What it changes against `localstripe` as shipped, and why:
- it listens on 127.0.0.1 only (as shipped it binds every interface);
- it keeps its store in memory: as shipped it rewrites a pickle of the whole store into the system
  temp folder on every write (10-36 ms a call, and state leaking between runs);
- it fills response fields that real Stripe always sends and async-stripe's typed responses require,
  but localstripe leaves out (PaymentIntent: amount_received, amount_capturable,
  payment_method_types, confirmation_method, livemode). Only missing fields are added, with the
  values Stripe would send for that state; nothing localstripe computes is overwritten.

Usage: python localstripe_launcher.py --port PORT [--host 127.0.0.1]
"""

import argparse
import logging
import socket

import localstripe.resources as resources

resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

from aiohttp import web  # noqa: E402
from localstripe import server  # noqa: E402


def fill_payment_intent(intent, obj):
    status = obj.get("status")
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
        fill(self, obj)
        return obj

    cls._export = _export


add_defaults(resources.PaymentIntent, fill_payment_intent)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    web.run_app(server.app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
