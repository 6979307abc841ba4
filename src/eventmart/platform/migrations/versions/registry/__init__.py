"""Migrations of the registry branch."""
