"""Skills: folders with a ``SKILL.md`` (YAML front matter, then Markdown instructions) that teach
agents a task. Agents see a short list of them and load one with the ``use_skill`` tool."""

from promptline.tools.skills.library import (
    READ_SKILL_FILE,
    USE_SKILL,
    SkillLibrary,
    SkillOrigin,
    SkillSource,
    SkillState,
    SkillStatus,
    skill_sources,
)
from promptline.tools.skills.parsing import (
    NAME_PATTERN,
    SKILL_FILE,
    Requirements,
    Skill,
    SkillFormatError,
    parse_skill,
    parse_skill_text,
)
from promptline.tools.skills.prompt import render_skill_list
from promptline.tools.skills.requirements import RequirementChecker
from promptline.tools.skills.tools import register_skill_tools, skill_tools

__all__ = [
    "NAME_PATTERN",
    "READ_SKILL_FILE",
    "SKILL_FILE",
    "USE_SKILL",
    "RequirementChecker",
    "Requirements",
    "Skill",
    "SkillFormatError",
    "SkillLibrary",
    "SkillOrigin",
    "SkillSource",
    "SkillState",
    "SkillStatus",
    "parse_skill",
    "parse_skill_text",
    "register_skill_tools",
    "render_skill_list",
    "skill_sources",
    "skill_tools",
]
