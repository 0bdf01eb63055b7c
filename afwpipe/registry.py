"""One name -> builder registry, used for face detectors, encoders and fusion heads.

Shaped like timm's model registry (``timm/models/_registry.py``: ``register_model`` records a builder
with its module's ``default_cfgs`` entry, ``list_models`` filters names with a shell pattern,
``create_model`` builds), written for afwpipe:

* ``@REG.register("name", default_cfg=cfg, source=src)`` on a builder (a function or a class);
* ``REG.register_family("timm:", builder, describe="<model_id>")`` for parameterised names: every
  ``timm:<id>`` is built as ``builder(id, *args, **kwargs)`` (the id is checked by the builder);
* ``REG.list("whisper*")``, ``REG.is_registered(name)``, ``REG.entry(name)``, ``REG.default_cfg(name)``;
* ``REG.create(name, *args, **kwargs)`` calls the builder; the namespaces keep their own signatures.

One duplicate rule: registering a taken name (or family prefix) with anything but the identical entry
raises :class:`DuplicateNameError` at import time. One unknown-name error, raised as the namespace's
error class: ``unknown <kind> 'x'; registered: a, b, c; families: timm:<model_id>``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from afwpipe.errors import AfwpipeError


class DuplicateNameError(AfwpipeError, ValueError):
    """A name (or family prefix) registered twice to different builders; a programming error raised at
    import time of the second module."""


@dataclass(frozen=True, eq=False)
class Entry:
    """One registered name or family.

    Attributes:
        name: the registered name; for a family its display name ``prefix + describe`` (``"timm:<model_id>"``).
        builder: the callable ``create`` calls (a family's gets the id after the prefix first).
        default_cfg: the builder's default config (namespace-specific data, e.g. an ``EncoderConfig``), or None.
        source: where the default weights come from (namespace-specific, e.g. a ``WeightsSource``), or None.
        prefix: a family's prefix (``"timm:"``); None for a plain name.
    """

    name: str
    builder: Callable[..., Any]
    default_cfg: Any = None
    source: Any = None
    prefix: str | None = None

    def same_as(self, other: Entry) -> bool:
        """The identical registration (same builder object, equal config and source)."""
        return (self.builder is other.builder and self.default_cfg == other.default_cfg
                and self.source == other.source and self.prefix == other.prefix)


class Registry:
    """Names and parameterised families of builders of one kind (detector, encoder, head).

    Args:
        kind: what the names name, for messages (``"encoder"``, ``"face detector"``, ``"head"``).
        error: the AfwpipeError subclass raised for an unknown name (e.g. ``EncoderError``).
    """

    def __init__(self, kind: str, error: type[AfwpipeError]) -> None:
        self.kind = kind
        self.error = error
        self._names: dict[str, Entry] = {}
        self._families: dict[str, Entry] = {}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._names)} names, families {sorted(self._families)})"

    @staticmethod
    def _add(table: dict[str, Entry], key: str, entry: Entry, what: str) -> None:
        old = table.get(key)
        if old is not None and not old.same_as(entry):
            raise DuplicateNameError(f"{what} {key!r} is already registered to {old.builder!r}")
        table[key] = entry

    def register(self, name: str, *, default_cfg: Any = None, source: Any = None) -> Callable[[Callable], Callable]:
        """Decorator registering a builder under ``name`` with its default config and weights source.

        Raises:
            DuplicateNameError: ``name`` is registered already to another builder or config.
        """

        def decorate(builder: Callable) -> Callable:
            self._add(self._names, name, Entry(name, builder, default_cfg, source), self.kind)
            return builder

        return decorate

    def register_family(self, prefix: str, builder: Callable[..., Any], *, describe: str = "<id>",
                        default_cfg: Any = None, source: Any = None) -> Callable[..., Any]:
        """Register every name ``prefix + id`` (id non-empty), built as ``builder(id, *args, **kwargs)``.

        ``describe`` names the id in listings and errors (``"timm:" + "<model_id>"``). Returns ``builder``.

        Raises:
            DuplicateNameError: ``prefix`` is registered already to another builder.
        """
        entry = Entry(prefix + describe, builder, default_cfg, source, prefix)
        self._add(self._families, prefix, entry, f"{self.kind} family")
        return builder

    def _family_of(self, name: str) -> Entry | None:
        for prefix, entry in self._families.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return entry
        return None

    def entries(self) -> list[Entry]:
        """Every entry: the plain names sorted, then the families sorted by prefix."""
        return [self._names[n] for n in sorted(self._names)] + [self._families[p] for p in sorted(self._families)]

    def list(self, pattern: str | None = None) -> list[str]:
        """Sorted names, then families as ``prefix<id>``, optionally those matching the shell pattern ``pattern``."""
        names = [e.name for e in self.entries()]
        return fnmatch.filter(names, pattern) if pattern else names

    def is_registered(self, name: str) -> bool:
        """Whether ``name`` is registered or belongs to a family (whose builder checks the id itself)."""
        return name in self._names or self._family_of(name) is not None

    def entry(self, name: str) -> Entry:
        """The entry of ``name`` (its family's for ``prefix + id``).

        Raises:
            self.error: ``name`` is unknown; the message lists the registered names and families.
        """
        found = self._names.get(name) or self._family_of(name)
        if found is None:
            families = [e.name for e in self.entries() if e.prefix is not None]
            plain = [e.name for e in self.entries() if e.prefix is None]
            msg = f"unknown {self.kind} {name!r}; registered: {', '.join(plain) or '(none)'}"
            raise self.error(msg + (f"; families: {', '.join(families)}" if families else ""))
        return found

    def default_cfg(self, name: str) -> Any:
        """The default config registered with ``name`` (its family's for ``prefix + id``); raises like :meth:`entry`."""
        return self.entry(name).default_cfg

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Build ``name``: ``builder(*args, **kwargs)``, or ``builder(id, *args, **kwargs)`` for a family name.

        Raises:
            self.error: ``name`` is unknown (the message lists what is registered); whatever the builder raises.
        """
        e = self.entry(name)
        if e.prefix is None:
            return e.builder(*args, **kwargs)
        return e.builder(name[len(e.prefix):], *args, **kwargs)
