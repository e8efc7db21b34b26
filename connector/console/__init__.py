"""The operator console: a live web page over the data directory (see :mod:`connector.console.app`)."""

from connector.console.app import ConsoleData, create_console_app

__all__ = ["ConsoleData", "create_console_app"]
