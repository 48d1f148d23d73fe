"""storage: the app's data directory (the work: state/storage.py)."""

from tinyserv.state import storage


def index(layout, app):
    """storage: the data directory's path, size and number of files."""
    return storage.info(layout, app)
