"""Triggers for long waits: they run in the triggerer, not in a worker slot."""
