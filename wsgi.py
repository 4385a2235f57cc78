"""Entry point for ``flask --app wsgi`` and for gunicorn (``gunicorn wsgi:app``)."""

from membership import create_app
from membership.config import ConfigError, refuse_to_start

try:
    app = create_app()
except ConfigError as error:
    refuse_to_start(error)  # the problem in a few plain lines, not a traceback
