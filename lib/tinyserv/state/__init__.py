"""The server's state under $TINYSERV_ROOT: layout, atomic files and locks, releases, app state, logs."""
