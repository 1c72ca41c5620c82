"""Alembic migrations: the only way PromptLine's schema is created or changed."""
