"""The chassis every eventmart service stands on.

Messages and their Avro schemas, the bus, the stores (event store, outbox, inbox), sagas,
projections, tracing, resilience, settings and the service runtime. Each mechanism sits
behind a port with one adapter per technology, chosen by settings.
"""
