"""Reader revenue for independent newsrooms."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from membership import config as settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints and commands."""
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        instance_path=str(PROJECT_ROOT / "instance"),
        instance_relative_config=False,
    )
    app.config.update(settings.from_environment(app.instance_path))
    app.config.update(overrides or {})
    warnings = settings.check(app.config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("stripe").setLevel(logging.WARNING)  # one line per API call otherwise
    for warning in warnings:
        logging.getLogger(__name__).warning("%s", warning)

    from membership import cli, emails, errors, security, templating
    from membership.extensions import csrf, db, limiter, login_manager, migrate

    app.config.setdefault(
        "RATELIMIT_STORAGE_URI", settings.limiter_storage_uri(app.config["REDIS_URL"])
    )
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), compare_type=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    emails.init_app(app)
    templating.init_app(app)

    from membership.accounts.views import bp as accounts_bp
    from membership.api.views import bp as api_bp
    from membership.billing.views import bp as billing_bp
    from membership.perks.views import bp as perks_bp
    from membership.reports.views import bp as reports_bp
    from membership.site.views import bp as site_bp
    from membership.staff.views import bp as staff_bp
    from membership.voting.views import bp as voting_bp

    app.register_blueprint(site_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(billing_bp)
    app.register_blueprint(perks_bp)
    app.register_blueprint(voting_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(staff_bp)
    app.register_blueprint(reports_bp)

    cli.init_app(app)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app
