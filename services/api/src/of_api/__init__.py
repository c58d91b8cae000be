"""OrderFlow api service."""
