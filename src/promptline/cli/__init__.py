"""Layer 6: the `promptline` command line (click + Rich)."""
