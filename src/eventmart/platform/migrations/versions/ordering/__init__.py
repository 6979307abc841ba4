"""Migrations of the ordering branch."""
