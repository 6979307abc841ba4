"""Schema governance: Avro schemas, the registry port, compatibility rules."""
