"""The gunicorn / flask entry point."""

from gad import create_app

app = create_app()
