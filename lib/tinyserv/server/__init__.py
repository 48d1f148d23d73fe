"""The server's entry (bin/tinyserv-remote): its commands, the ssh door, keys, setup, doctor, backups."""
