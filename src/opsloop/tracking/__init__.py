"""Tracking: experiments, runs, params, metric series, tags, run inputs and outputs."""
