"""Adapters of the customer context: where its port meets a real store."""
