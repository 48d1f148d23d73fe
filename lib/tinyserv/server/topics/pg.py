"""pg:psql, pg:backups, pg:backups:*: an app's PostgreSQL database (the work: addons/postgres.py)."""

from tinyserv.addons import postgres


def psql(layout, app, command=None, database=None):
    """pg:psql [-c SQL] [DATABASE]: psql on the add-on's database, as its own role (stream)."""
    return postgres.psql(layout, app, command, database)


def backups(layout, app, database=None):
    """pg:backups: the database's kept backups, oldest first."""
    return postgres.backups(layout, app, database)


def backups_capture(layout, app, database=None):
    """pg:backups:capture: pg_dump the database now into a new backup."""
    return postgres.backups_capture(layout, app, database)


def backups_restore(layout, app, backup=None, database=None):
    """pg:backups:restore [ID]: load a backup into the database, replacing its tables."""
    return postgres.backups_restore(layout, app, backup, database)


def backups_download(layout, app, backup=None, database=None):
    """pg:backups:download [ID]: write a backup to standard output (stream)."""
    return postgres.backups_download(layout, app, backup, database)
