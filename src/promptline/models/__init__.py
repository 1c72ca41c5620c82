"""Layer 3: model providers, capabilities, routing and usage."""
