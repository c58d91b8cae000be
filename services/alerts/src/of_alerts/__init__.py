"""OrderFlow alerts service."""
