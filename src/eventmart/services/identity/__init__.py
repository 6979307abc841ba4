"""identity: customers and administrators, their passwords and their tokens."""
