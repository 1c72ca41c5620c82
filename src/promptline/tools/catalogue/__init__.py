"""The catalogue: skills and tool packages offered by folder and git sources, each listed in
an index file with its version and checksum, installed switched off (see docs/plugins.md)."""

from promptline.tools.catalogue.catalogue import (
    Catalogue,
    ChecksumMismatchError,
    InstallReport,
    SearchHit,
    SourceProblem,
    parse_spec,
)
from promptline.tools.catalogue.checksum import checksum, file_checksum, tree_checksum
from promptline.tools.catalogue.index import (
    INDEX_FORMAT,
    CatalogueEntry,
    CatalogueIndexError,
    read_index,
)
from promptline.tools.catalogue.installed import INSTALLED_FILE, InstalledItem
from promptline.tools.catalogue.unpack import ArchiveLimits, UnsafeArchiveError

__all__ = [
    "INDEX_FORMAT",
    "INSTALLED_FILE",
    "ArchiveLimits",
    "Catalogue",
    "CatalogueEntry",
    "CatalogueIndexError",
    "ChecksumMismatchError",
    "InstallReport",
    "InstalledItem",
    "SearchHit",
    "SourceProblem",
    "UnsafeArchiveError",
    "checksum",
    "file_checksum",
    "parse_spec",
    "read_index",
    "tree_checksum",
]
