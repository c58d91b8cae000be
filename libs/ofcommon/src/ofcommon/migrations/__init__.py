"""Alembic environment of the OrderFlow PostgreSQL schema, shipped inside the ofcommon package.

Run it through ofcommon.db (migrate, alembic_config); there is no alembic.ini on disk.
"""
