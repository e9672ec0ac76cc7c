"""celeriac's Alembic environment, shipped inside the package."""
