"""Layer 0: pure data shared by every other layer (ids, clock, errors, messages, events)."""
