"""Adapters of the payment context: where its port meets a real store."""
