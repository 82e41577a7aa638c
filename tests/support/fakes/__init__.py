"""Small fakes that keep state, for unit tests of the domain and use cases."""
