"""Layer 1: database engines, the relational schema and its migrations, the Redis client."""
