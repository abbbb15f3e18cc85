"""The gunicorn / flask entry point."""

from config import ConfigError
from gad import create_app

try:
    app = create_app()
except ConfigError as exc:
    # One actionable line instead of a traceback: the operator needs to know which variable to set.
    raise SystemExit(f"GAD configuration error: {exc}") from None
