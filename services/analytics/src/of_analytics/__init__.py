"""OrderFlow analytics service."""
