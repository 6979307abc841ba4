"""Migrations of the payment branch."""
