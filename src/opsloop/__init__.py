"""opsloop."""
