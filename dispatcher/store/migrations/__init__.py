"""Alembic migrations of the dispatcher's schema (`dispatcher db upgrade`)."""
