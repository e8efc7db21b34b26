"""doopage-sheets: keeps a Google Sheet of customers and orders current from DooPage CRM webhooks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("doopage-sheets")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
