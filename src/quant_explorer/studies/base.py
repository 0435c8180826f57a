"""What a study is to the rest of the package: the `Study` protocol that `analyze` runs and the report draws, and
the `StudyEntry` every kind's stored entry extends.

Apart from the registry so that a study's module can import it without importing every other study.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Protocol

from ..identity import identity_hash
from ..results import load_results
from ..row import Measured, Row


@dataclass
class StudyEntry(Measured):
    """What every study entry says of itself, as a row does (`row.Measured`), and its evaluation set (so a view
    tells which entries were measured alike: `analysis.current_studies`); `error` where its worker died. A kind's
    entry adds its numbers."""

    n_images: int | None = None
    dataset: str | None = None
    schema: int | None = None  # the schema version of an entry migrated from an older file
    error: str | None = None


def read_entries(path: Path, kind: type[Study]) -> dict[str, StudyEntry]:
    """A study file's entries, each as its kind's entry type."""
    return {key: kind.entry_type.from_dict(e) for key, e in load_results(path)["entries"].items()}


class Delta(float):
    """A change in accuracy (pp, which its column names; negative = a loss) as a table cell: the HTML colours it,
    a terminal signs it."""

    def __str__(self) -> str:
        return f"{self:+.2f}"


def measured_alike(entry: StudyEntry, identity: dict) -> bool:
    """Whether a stored entry has this identity, compared as stored (JSON turns a preprocessing's mean and std
    tuples into lists, so the dicts themselves differ for a model normalized with them)."""
    return entry.identity is not None and identity_hash(entry.identity) == identity_hash(identity)


class PoolStudy:
    """Defaults for a study of one model x config that draws its calibration samples from the whole pool: its
    identity is a row's less the one sample (`experiment.study_identity`), its key names the model, config and that
    identity, and a stored entry is current when measured alike."""

    model: str
    config: str

    def identity(self, model, data) -> dict:
        from ..backends import get_config
        from ..keys import study_identity

        return study_identity(model, get_config(self.config), data)

    def key(self, model, data) -> str:
        from ..results import entry_key

        return entry_key(self.model, self.config, identity_hash=identity_hash(self.identity(model, data)))

    def is_current(self, entry: StudyEntry, model, data) -> bool:
        return measured_alike(entry, self.identity(model, data))


class Study(Protocol):
    """One targeted experiment on one model x config: where and under which key its entry is stored, when that
    entry is current, how to compute it, and its part of the report (a section of its kind: per entry a heading,
    a line of text, a table and a plot). `table` is the one formatter of its numbers, for the report and its
    command alike; its cells are strings, or `Delta`s."""

    model: str
    config: str
    entry_type: ClassVar[type[StudyEntry]]  # its stored entry's type
    kind: ClassVar[str]  # its name in logs ("calibration size")
    file: ClassVar[str]  # its results file, beside full_results.json
    title: ClassVar[str]  # its report section's title
    anchor: ClassVar[str]  # that section's id in the page
    intro: ClassVar[str]  # a paragraph before the section's entries ("" for none)
    figure: ClassVar[str]  # what its plot shows, for the image's alt text

    def identity(self, model, data) -> dict: ...

    def key(self, model, data) -> str: ...

    def is_current(self, entry: StudyEntry, model, data) -> bool: ...

    def run(self, model, data, stored: dict[str, Row], log: Callable[[str], None]) -> StudyEntry:
        """The entry; `stored` holds the sweep's rows (full_results.json), which a study may take points from."""

    def save(self, path: Path, entry: StudyEntry) -> None: ...

    @staticmethod
    def heading(entry: StudyEntry) -> str: ...

    @staticmethod
    def text(entry: StudyEntry) -> str: ...

    @staticmethod
    def table(entry: StudyEntry) -> tuple[list[str], list[list]]: ...

    @staticmethod
    def plot(entry: StudyEntry) -> bytes | None: ...
