"""Migrations of the catalog branch."""
