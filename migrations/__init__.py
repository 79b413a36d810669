"""Alembic environment and revisions: the only place the read-model schema is created."""
