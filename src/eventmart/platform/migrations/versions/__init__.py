"""One folder per branch of migrations (see eventmart.platform.migrations)."""
