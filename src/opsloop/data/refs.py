"""Dataset names and references: ``sensors``, ``sensors@3``, ``sensors@latest``, ``sensors@9f2c1e7``.

Other parts (pipelines, monitoring, the CLI) name a dataset version by one string, so
the rules live here once. A name is also a folder in the artifact store
(``datasets/<name>/<digest>.parquet``), hence the strict alphabet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from opsloop.errors import InvalidInput

MAX_NAME_LENGTH = 250
MIN_DIGEST_PREFIX = 4
# A string of at most this many digits is a version number, a longer one a digest prefix.
MAX_VERSION_DIGITS = 6
LATEST = "latest"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEX_RE = re.compile(r"^[0-9a-f]+$")


def dataset_name(name: Any) -> str:
    """Check a dataset name: letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or digit, at most 250 characters.

    Example::

        dataset_name("sensors-2026.v1")   # "sensors-2026.v1"
        dataset_name("my data")           # InvalidInput
    """
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"a dataset name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"dataset name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"dataset name {name!r} is not valid: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (e.g. 'sensors' or 'sensors-eu.v2')"
        )
    return name


@dataclass(frozen=True, slots=True)
class VersionSelector:
    """Which version of a name: a number, a digest prefix, or the latest (both None)."""

    number: int | None = None
    digest_prefix: str | None = None

    @property
    def is_latest(self) -> bool:
        return self.number is None and self.digest_prefix is None

    def __str__(self) -> str:
        if self.number is not None:
            return str(self.number)
        return self.digest_prefix or LATEST


def version_selector(version: Any) -> VersionSelector:
    """Read a version: ``3`` or ``"3"``, ``"latest"`` or None, or a digest or digest prefix.

    A string of up to six digits is a version number; a digest prefix needs at least
    four hex digits (an all-digit prefix, at least seven).

    Example::

        version_selector("3").number                 # 3
        version_selector("9f2c1e7").digest_prefix    # "9f2c1e7"
    """
    if version is None:
        return VersionSelector()
    if isinstance(version, bool):
        raise InvalidInput(f"a dataset version must be a number or a digest, got {version!r}")
    if isinstance(version, int):
        if version < 1:
            raise InvalidInput(f"dataset versions start at 1, got {version}")
        return VersionSelector(number=version)
    if not isinstance(version, str):
        raise InvalidInput(
            f"a dataset version must be a number, 'latest' or a digest, got {type(version).__name__}"
        )
    v = version.strip()
    if v.lower() == LATEST:
        return VersionSelector()
    if v.isdigit() and v.isascii() and len(v) <= MAX_VERSION_DIGITS:
        n = int(v)
        if n < 1:
            raise InvalidInput(f"dataset versions start at 1, got {version!r}")
        return VersionSelector(number=n)
    low = v.lower()
    if _HEX_RE.match(low) and MIN_DIGEST_PREFIX <= len(low) <= 64:
        return VersionSelector(digest_prefix=low)
    raise InvalidInput(
        f"{version!r} is not a dataset version: give a number (3), 'latest', or a digest "
        f"(at least {MIN_DIGEST_PREFIX} hex digits)"
    )


def parse_ref(ref: Any, version: Any = None) -> tuple[str, VersionSelector]:
    """Split ``"sensors@3"`` into the name and a version selector.

    ``version`` is the version given separately (as in ``get("sensors", version=3)``);
    giving one both ways is refused.

    Example::

        parse_ref("sensors@latest")     # ("sensors", VersionSelector())
        parse_ref("sensors", 2)         # ("sensors", VersionSelector(number=2))
    """
    if not isinstance(ref, str):
        raise InvalidInput(f"a dataset reference must be a string like 'sensors@3', got {ref!r}")
    name, sep, ver = ref.partition("@")
    if sep:
        if version is not None:
            raise InvalidInput(
                f"{ref!r} already names a version; do not also pass version={version!r}"
            )
        if not ver:
            raise InvalidInput(f"{ref!r} has an empty version after '@'")
        return dataset_name(name), version_selector(ver)
    return dataset_name(name), version_selector(version)
