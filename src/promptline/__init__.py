"""PromptLine: a local-first runtime and gateway for AI agents."""

__version__ = "0.1.0"
