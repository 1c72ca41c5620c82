"""Layer 2: key/value state in three scopes (global, session, local) on several backends."""
