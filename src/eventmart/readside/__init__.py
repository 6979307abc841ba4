"""The read side: projections of the shop's events into query-shaped views (CQRS).

Each projection is its own consumer group, so it can be rebuilt from the log alone
(`eventmart replay <projection>`); the views live behind the `ViewStore` port.
"""
