"""One module per command topic: `TOPIC[:VERB...]` is served by topics/TOPIC.py (see common/commands.py)."""
