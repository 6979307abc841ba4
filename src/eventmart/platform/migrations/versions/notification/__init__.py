"""Migrations of the notification branch."""
