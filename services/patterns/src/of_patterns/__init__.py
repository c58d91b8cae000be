"""OrderFlow patterns service."""
