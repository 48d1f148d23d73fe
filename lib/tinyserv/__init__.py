"""tinyserv: a tiny Heroku for your own server (standard library only)."""

__version__ = "0.1.0"
