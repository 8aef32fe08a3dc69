"""AIOps: operational signals, streaming anomaly detection and log template mining.

Submodules are imported on use (``opsloop.aiops.logs``), so importing this package is cheap.
"""
