"""The errors nasforge raises at its users: each one prints as a single clear line.

Every error names what is at fault — the file and YAML path of a bad config field, the
plugin and distribution of a misbehaving plugin, the key of an arch outside its space —
so the CLI can print ``str(error)`` and nothing else.
"""

from __future__ import annotations


class NasforgeError(Exception):
    """Base of every error nasforge reports to a user as one line."""


class ConfigError(NasforgeError):
    """An experiment file that does not validate.

    ``path`` is the dotted YAML path of the field at fault (``search.strategy``,
    ``objectives[1].direction``); ``file`` is the experiment file when known.
    """

    def __init__(self, path: str, message: str, file: str | None = None):
        self.path = path
        self.message = message
        self.file = file
        super().__init__(self.__str__())

    def with_file(self, file: str) -> ConfigError:
        return ConfigError(self.path, self.message, file)

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        prefix = f"{self.file}: " if self.file else ""
        return f"{prefix}{where}{self.message}"


class PluginError(NasforgeError):
    """A plugin that cannot be loaded, collides with another, or breaks its contract."""


class ArchError(NasforgeError, ValueError):
    """An arch that lies outside its search space; the message names the bad key."""


class StudyError(NasforgeError):
    """The study storage or run directory cannot be used as asked."""
