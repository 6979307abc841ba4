"""basket: one basket per customer, priced from a local copy of the catalog's prices."""
