"""Tool packages: Python code, found through entry points, the configuration or the plugins
folder, whose tools are registered under the package's name and can be loaded, unloaded and
reloaded while the app runs (see docs/plugins.md)."""

from promptline.tools.plugins.discovery import ENTRY_POINT_GROUP, PackageSpec
from promptline.tools.plugins.loader import ToolCollector
from promptline.tools.plugins.manager import PackageState, PackageStatus, PluginManager
from promptline.tools.plugins.manifest import MANIFEST_FILE, PackageManifest

__all__ = [
    "ENTRY_POINT_GROUP",
    "MANIFEST_FILE",
    "PackageManifest",
    "PackageSpec",
    "PackageState",
    "PackageStatus",
    "PluginManager",
    "ToolCollector",
]
