"""The run follower of the gateway's streamed answers lives in the runtime
(`promptline.runtime.answer`), where the Python API uses it too."""

from promptline.runtime.answer import RUN_ENDINGS, RunAnswer, ThinkingFilter

__all__ = ["RUN_ENDINGS", "RunAnswer", "ThinkingFilter"]
