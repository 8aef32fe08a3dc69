"""Core: configuration, ids and the clock — what every part may use."""
