"""Hardware knobs, energy meters and the hardware context that restores them (tuning work)."""
