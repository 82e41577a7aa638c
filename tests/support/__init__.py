"""Test support shared by every layer of the suite: builders, harnesses and helpers; fixtures stay in conftest."""
