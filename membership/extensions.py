"""The app's extensions, created unbound here and bound to the app in ``create_app``."""

from __future__ import annotations

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from membership.database import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "accounts.login"
login_manager.login_message = "Please log in to see that page."
login_manager.login_message_category = "info"
# The session-token check in accounts.service makes flask-login's own protection redundant, and
# its "strong" mode would wipe the session of readers whose address changes on mobile networks.
login_manager.session_protection = None


def _client_address() -> str:
    return get_remote_address() or request.remote_addr or "unknown"


# Storage is chosen in create_app: memory by default, Redis when REDIS_URL is set, so that limits
# hold across processes.
limiter = Limiter(key_func=_client_address, default_limits=[], headers_enabled=True)


@limiter.request_filter
def _health_checks() -> bool:
    """A load balancer asks often, from one address; it must never be told to go away.
    (Stripe's webhook deliveries are exempt on their route.)"""
    return request.endpoint == "site.healthz"
