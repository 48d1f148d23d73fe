"""Add-ons: PostgreSQL databases and Redis servers of an app's own."""
