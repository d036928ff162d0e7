"""The database layer: SQLAlchemy 2 models, session factory, job state transitions, migrations.

Imports netfit and SQLAlchemy only and never reads settings: callers pass the URL in.
"""
