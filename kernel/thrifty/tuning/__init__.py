"""Energy tuning under a latency SLO (filled in by the tuning work)."""
