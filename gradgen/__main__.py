"""`python -m gradgen`."""

from .cli import command

command()
