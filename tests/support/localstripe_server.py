"""Run localstripe (a fake, stateful Stripe server) on 127.0.0.1 without saving to disk.

Used by the tests and by ``make run`` when no Stripe keys are configured. localstripe is a
development dependency only (GPL-3.0): it runs as its own process and the app never imports it.

    python -m tests.support.localstripe_server --port 8420
"""

from __future__ import annotations

import argparse
import logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--webhook-url", help="register this URL for every event")
    parser.add_argument("--webhook-secret", default="whsec_offline_demo")
    args = parser.parse_args()

    from aiohttp import web
    from localstripe import resources, server
    from localstripe.webhooks import register_webhook

    if args.webhook_url:
        register_webhook("membership", args.webhook_url, args.webhook_secret, None)

    # The stock command pickles its whole state after every write; nothing here needs that.
    resources.store.dump_to_disk = lambda *a, **k: None  # type: ignore[method-assign]
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    web.run_app(server.app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
