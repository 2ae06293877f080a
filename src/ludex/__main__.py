"""``python -m ludex`` runs the CLI."""

from ludex.cli import app

app()
