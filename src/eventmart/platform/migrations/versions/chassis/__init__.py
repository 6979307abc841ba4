"""Migrations of the chassis branch."""
