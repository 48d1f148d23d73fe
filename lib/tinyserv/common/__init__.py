"""What both sides share: the command table, the one error type, output, names, settings, pure parsers."""
