"""inventory: stock per product (event-sourced, one stream per product) and reservations
for orders, driven by the ordering saga's commands."""
