"""Migrations of the identity branch."""
