"""Migrations of the shipping branch."""
