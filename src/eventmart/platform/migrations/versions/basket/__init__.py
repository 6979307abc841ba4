"""Migrations of the basket branch."""
