"""OrderFlow shared core."""
