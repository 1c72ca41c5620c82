"""Catalogue sources: a folder used where it is, or a git repository cloned into the cache
folder with the ``git`` program and kept at the configured ref."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from promptline.config.plugins import CatalogueSource
from promptline.core.errors import NotFoundError, PromptLineError
from promptline.storage.files import private_dir

__all__ = ["GIT_TIMEOUT_SECS", "Source", "SourceError"]

GIT_TIMEOUT_SECS = 300.0
_STAMP = "promptline-source"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class SourceError(PromptLineError):
    """A source cannot be reached: its folder is missing, or git failed."""

    code = "catalogue_source"


@dataclass(frozen=True, slots=True)
class Source:
    """One configured source by name."""

    name: str
    settings: CatalogueSource
    cache_dir: Path

    @property
    def description(self) -> str:
        """Where it is, for people: the folder, or ``git URL @ ref``."""
        if self.settings.path is not None:
            return str(self.settings.path)
        ref = f" @ {self.settings.ref}" if self.settings.ref else ""
        return f"git {self.settings.git}{ref}"

    @property
    def checkout(self) -> Path:
        """Where a git source is checked out."""
        url = self.settings.git or ""
        tag = hashlib.sha256(url.encode()).hexdigest()[:10]
        return self.cache_dir / f"{_UNSAFE.sub('_', self.name)}-{tag}"

    def root(self, *, refresh: bool = False) -> Path:
        """The folder holding the source's files. A git source is cloned when it has no
        checkout yet, and fetched again when ``refresh`` is set or its ref changed."""
        if self.settings.path is not None:
            folder = Path(self.settings.path)
            if not folder.is_dir():
                raise NotFoundError(
                    f"the catalogue source {self.name!r} is not a folder: {folder}",
                    hint=f"fix catalogue.sources.{self.name}.path",
                )
            return folder
        return self._sync(refresh=refresh)

    def index_file(self, *, refresh: bool = False) -> Path:
        """The source's index file."""
        return self.root(refresh=refresh) / self.settings.index

    def _sync(self, *, refresh: bool) -> Path:
        url = self.settings.git
        assert url is not None
        ref = self.settings.ref or ""
        dest = self.checkout
        stamp = dest / ".git" / _STAMP
        wanted = f"{url}\n{ref}\n"
        if not (dest / ".git").is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            private_dir(dest.parent)
            self._git("clone", "--quiet", "--no-checkout", "--", url, str(dest), cwd=None)
        elif refresh or not stamp.is_file() or stamp.read_text() != wanted:
            self._git("remote", "set-url", "origin", url, cwd=dest)
            self._git(
                "fetch",
                "--quiet",
                "--prune",
                "--tags",
                "--force",
                "origin",
                "+refs/heads/*:refs/remotes/origin/*",
                cwd=dest,
            )
        else:
            return dest
        commit = self._commit(dest, ref)
        self._git("checkout", "--quiet", "--force", "--detach", commit, cwd=dest)
        self._git("clean", "-ffdxq", cwd=dest)
        stamp.write_text(wanted)
        return dest

    def _commit(self, dest: Path, ref: str) -> str:
        candidates = [f"origin/{ref}", ref] if ref else ["origin/HEAD", "HEAD"]
        for candidate in candidates:
            found = self._git(
                "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=dest, check=False
            )
            if found:
                return found
        raise SourceError(
            f"the catalogue source {self.name!r} has no branch, tag or commit {ref or 'HEAD'!r}",
            hint=f"fix catalogue.sources.{self.name}.ref",
        )

    def _git(self, *args: str, cwd: Path | None, check: bool = True) -> str:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_SECS,
                check=False,
            )
        except FileNotFoundError:
            raise SourceError(
                f"the catalogue source {self.name!r} is a git repository, but git is not installed",
                hint="install git, or use a folder source (path:)",
            ) from None
        except subprocess.TimeoutExpired:
            raise SourceError(
                f"git {args[0]} of the catalogue source {self.name!r} took more than "
                f"{GIT_TIMEOUT_SECS:.0f} s",
                hint="check the network and the repository URL",
            ) from None
        if done.returncode != 0:
            if not check:
                return ""
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise SourceError(
                f"git {args[0]} failed for the catalogue source {self.name!r}: "
                f"{detail[-1] if detail else f'exit code {done.returncode}'}",
                hint=f"check catalogue.sources.{self.name}.git ({self.settings.git})",
            )
        return done.stdout.strip()
