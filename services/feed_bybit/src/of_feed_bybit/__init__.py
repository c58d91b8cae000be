"""OrderFlow feed_bybit service."""
