"""OrderFlow aggregator service."""
