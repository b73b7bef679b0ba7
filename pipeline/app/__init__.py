"""`oczss app`: a local web page to try the methods on your own photos (server.py; the page is page.html)."""

from oczss.pipeline.app.server import App, serve

__all__ = ["App", "serve"]
