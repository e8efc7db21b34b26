"""Following the mapping file while the service runs, so a fix on disk takes effect without a restart.

:class:`MappingWatcher` holds the mapping a worker routes with. :meth:`MappingWatcher.check` looks at the
file (a ``stat``, cheap enough for every pass); when its size or modification time moved it reads the
file and compares its content with the content in use, and only a different content is parsed. A valid
new mapping replaces the old one; a broken one is logged once (file, path, reason, like at start-up) and
the previous mapping stays in use. An inline mapping (in the settings file) does not change.

The console's "retry" relies on this: the operator fixes the spreadsheet id in the mapping file and
presses retry; the parked events go back to pending, and the worker, checking the file before its next
pass, writes them with the mapping on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable

from connector.errors import ConfigError
from connector.settings import Settings
from connector.sync.mapping import SheetMapping, load_mapping, mapping_file, parse_mapping

__all__ = ["MappingWatcher"]

log = logging.getLogger(__name__)


class MappingWatcher:
    """The current mapping of a settings file, re-read when the mapping file's content changes."""

    def __init__(
        self,
        settings: Settings,
        mapping: SheetMapping | None = None,
        *,
        check: Callable[[SheetMapping], None] | None = None,
    ) -> None:
        """Start from ``mapping`` (already loaded) or load it now; raises ConfigError if it is invalid.

        ``check`` raises ConfigError for a mapping the process cannot use although it is valid on its
        own (a pinned credential that is not in the pool): a new file failing it is refused too."""
        self.mapping = mapping if mapping is not None else load_mapping(settings)
        self._check = check
        self.path = mapping_file(settings)
        self.error: str | None = None  # why the file on disk is not in use, while it is not
        self._stat = self._stat_now()
        self._digest = self._digest_now()

    def check(self) -> SheetMapping | None:
        """The new mapping when the file changed to a valid one since the last call, else None."""
        if self.path is None:
            return None
        stat = self._stat_now()
        if stat == self._stat:
            return None
        self._stat = stat
        try:
            content = self.path.read_bytes()
        except OSError as exc:
            self._refuse(f"{self.path}: cannot read the mapping file ({exc.strerror})")
            return None
        digest = hashlib.sha256(content).hexdigest()
        if digest == self._digest:
            return None
        self._digest = digest
        try:
            mapping = parse_mapping(content.decode("utf-8"), str(self.path))
            if self._check is not None:
                self._check(mapping)
        except (ConfigError, UnicodeDecodeError) as exc:
            self._refuse(str(exc))
            return None
        self.mapping, self.error = mapping, None
        log.info("%s changed: now %d companies mapped", self.path, len(mapping.companies))
        return mapping

    def _refuse(self, error: str) -> None:
        if error != self.error:
            log.error("mapping file changed but cannot be used (the previous mapping stays): %s", error)
        self.error = error

    def _stat_now(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    def _digest_now(self) -> str | None:
        if self.path is None:
            return None
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None
