"""The platform components, one module each."""
