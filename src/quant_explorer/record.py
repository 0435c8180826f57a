"""A stored JSON object, typed: what every document quant-explorer writes is made of (a result row, a bench entry,
a study entry), so readers name fields as attributes and a typo is an error, not a silent None.

A field that is None is not stored. `from_dict` / `to_dict` round-trip a stored object exactly, key order
included; keys this version does not know (written by a newer one) and stored nulls are kept in `extra` and
written back. Fields holding other records (`NESTED`) are typed too, whether read from disk, built or assigned in
code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

_FIELDS: dict[type, tuple[str, ...]] = {}  # per record type: its stored fields, in declaration order


@dataclass
class Record:
    extra: dict = field(default_factory=dict)  # keys of a newer version (and stored nulls), kept as they were
    _order: tuple[str, ...] = field(default=(), repr=False, compare=False)  # the stored key order
    # field -> the Record type it holds, or (dict, type) / (list, type): a mapping or list of them
    NESTED: ClassVar[dict[str, type | tuple[type, type]]] = {}

    def __setattr__(self, name: str, value) -> None:
        """A nested field takes a dict (or a mapping or list of them) as its record type, however it is set."""
        kind = self.NESTED.get(name)
        super().__setattr__(name, value if kind is None or value is None else _typed(kind, value))

    @classmethod
    def stored_fields(cls) -> tuple[str, ...]:
        if cls not in _FIELDS:
            _FIELDS[cls] = tuple(f.name for f in fields(cls) if f.name not in ("extra", "_order"))
        return _FIELDS[cls]

    @classmethod
    def from_dict(cls, stored: dict):
        names = cls.stored_fields()
        known = {k: v for k, v in stored.items() if k in names and v is not None}
        extra = {k: v for k, v in stored.items() if k not in known}
        return cls(**known, extra=extra, _order=tuple(stored))

    def to_dict(self) -> dict:
        """As stored: set fields (then `extra`) in the order it was read in, new fields after."""
        out = {**self.extra, **{k: _plain(v) for k in self.stored_fields() if (v := getattr(self, k)) is not None}}
        rank = {k: i for i, k in enumerate(self._order)}
        return dict(sorted(out.items(), key=lambda item: rank.get(item[0], len(rank))))


def _typed(kind, value):
    """A stored value as the nested field's type: dicts become records (a mapping or list holding one, a new
    mapping or list), anything else stays as it is, the very object."""
    if isinstance(kind, tuple):
        container, record = kind
        if not isinstance(value, container) or not any(
                isinstance(v, dict) for v in (value.values() if container is dict else value)):
            return value
        if container is dict:
            return {k: _typed(record, v) for k, v in value.items()}
        return [_typed(record, v) for v in value]
    return kind.from_dict(value) if isinstance(value, dict) else value


def _plain(value):
    """A field's value as stored: nested records as dicts."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict) and any(isinstance(v, Record) for v in value.values()):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list) and any(isinstance(v, Record) for v in value):
        return [_plain(v) for v in value]
    return value


def document(obj) -> dict:
    """A computed dataclass (an answer, a summary row: shown, never read back) as JSON: every field in declaration
    order, nulls included, under the key its metadata names (`json`) where that differs; nested records as stored."""
    return {f.metadata.get("json", f.name): _plain(getattr(obj, f.name)) for f in fields(obj)}
