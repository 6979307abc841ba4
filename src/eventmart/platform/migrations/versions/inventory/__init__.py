"""Migrations of the inventory branch."""
