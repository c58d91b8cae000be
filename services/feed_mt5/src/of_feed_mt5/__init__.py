"""OrderFlow feed_mt5 service."""
