"""The `lodbrok` command line, driven as a user would (in-process through `main`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lodbrok.model.bundle import Bundle
from lodbrok.model.data import items_to_jsonl
from lodbrok_cli.main import main
from support import make_tiny_dataset


@pytest.fixture
def bundle_path(tmp_path: Path, tiny_bundle: Bundle) -> Path:
    path = tmp_path / "model.lbk"
    tiny_bundle.write(str(path))
    return path


def test_cli_train_on_jsonl_writes_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a labelled JSONL file
    data = tmp_path / "data.jsonl"
    data.write_bytes(items_to_jsonl(make_tiny_dataset(120)))
    out = tmp_path / "trained.lbk"
    # When training from it
    status = main(["train", "--data", str(data), "--out", str(out), "--epochs", "3"])
    # Then a valid bundle is written and the metrics table printed
    assert status == 0
    assert Bundle.read(str(out)).labels == ["ham", "spam"]
    assert "spam" in capsys.readouterr().out


def test_cli_evaluate_json_has_per_label_scores(bundle_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # When evaluating on the bundle's gate set with --json and a report file
    report = bundle_path.parent / "report.json"
    status = main(["evaluate", "--model", str(bundle_path), "--json", "--report", str(report)])
    # Then per-label precision/recall/f1 and accuracy are printed, and the report has the confusion matrix
    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert set(printed["spam"]) >= {"precision", "recall", "f1"}
    assert 0.9 <= printed["accuracy"] <= 1.0
    assert len(json.loads(report.read_text())["confusion_matrix"]) == 2


def test_cli_predict_texts_and_records(bundle_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # When predicting a text and a record as JSON
    record = json.dumps({"name": "Ann", "bio": "call 09012345678 to claim your prize", "area": None})
    status = main(
        ["predict", "--model", str(bundle_path), "--json", "WINNER! free holiday, call now", "--record", record]
    )
    # Then one JSON line per input, with probabilities that sum to 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and len(lines) == 2
    assert lines[0]["label"] == "spam"
    assert abs(sum(lines[1]["probabilities"].values()) - 1) < 1e-5


def test_cli_predict_explain_shows_the_weighing_pieces(bundle_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # When a text and a record are predicted with --explain, as text and as JSON
    record = json.dumps({"subject": "WINNER! call 09012345678 to claim your prize"})
    text = "WINNER! free holiday, call now"
    main(["predict", "--model", str(bundle_path), "--explain", text, "--record", record])
    shown = capsys.readouterr().out.splitlines()
    status = main(["predict", "--model", str(bundle_path), "--explain", "--json", text, "--record", record])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    # Then each answer is followed by its pieces with signed weights (a record's with their field),
    # and the JSON carries the same explanation
    assert status == 0 and shown[0].startswith("spam\t")
    assert any(line.startswith("  +") for line in shown) and any("subject: " in line for line in shown)
    assert lines[0]["explanation"]["label"] == lines[0]["label"] == "spam"
    assert lines[0]["explanation"]["towards"][0]["weight"] > 0
    assert {entry["field"] for entry in lines[1]["explanation"]["towards"]} == {"subject"}


def test_cli_predict_review_band_sends_unsure_answers_for_review(
    bundle_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a band that holds every spam probability
    band = json.dumps({"spam": [0, 1]})

    # When a text is predicted with it, and with a band for a label the model lacks
    status = main(["predict", "--model", str(bundle_path), "--json", "--review-band", band, "free prize"])
    line = json.loads(capsys.readouterr().out)
    refused = main(["predict", "--model", str(bundle_path), "--review-band", '{"billing": [0.4, 0.6]}', "hi"])

    # Then the decision is review (the label is kept), and the unknown label is a clear error
    assert status == 0 and line["decision"] == "review" and line["label"] in {"spam", "ham"}
    assert refused == 2 and "does not have" in capsys.readouterr().err


def test_cli_train_min_precision_is_stored_and_inspect_shows_the_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a labelled JSONL file
    data = tmp_path / "data.jsonl"
    data.write_bytes(items_to_jsonl(make_tiny_dataset(120)))
    out = tmp_path / "precise.lbk"

    # When training with a precision target and inspecting the bundle
    status = main(["train", "--data", str(data), "--out", str(out), "--epochs", "3", "--min-precision", "0.98"])
    capsys.readouterr()
    main(["inspect", str(out)])
    shown = capsys.readouterr().out

    # Then the rule carries the target and inspect shows each label's threshold and how it was chosen
    decision = Bundle.read(str(out)).metadata["decision"]
    assert status == 0 and decision["min_precision"] == 0.98
    line = next(line for line in shown.splitlines() if line.startswith("decision"))
    assert f"spam {decision['thresholds']['spam']:.4f}" in line
    assert "precision >= 0.98" in line and "out-of-fold" in line


@pytest.mark.parametrize("target", ["0", "1.2", "high"])
def test_cli_train_rejects_a_precision_target_outside_0_1(
    tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a precision target that is not a fraction
    # When training is asked for
    with pytest.raises(SystemExit) as raised:
        main(["train", "--out", str(tmp_path / "x.lbk"), "--min-precision", target])

    # Then argparse refuses it before any training
    assert raised.value.code == 2
    assert "--min-precision" in capsys.readouterr().err


def test_cli_inspect_shows_lineage(bundle_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["inspect", str(bundle_path), "--json"])
    metadata = json.loads(capsys.readouterr().out)
    assert status == 0
    assert metadata["version"] == "v1" and metadata["parent_version"] is None
    assert set(metadata["members"]) >= {"model.keras", "model.tflite"}


@pytest.mark.parametrize(
    ("method", "progress"), [(None, ["anchoring weights", "epoch 4/4"]), ("retrain", ["epoch 5/5"])]
)
def test_cli_finetune_writes_child_bundle_when_the_gate_would_promote_it(
    bundle_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str | None, progress: list[str]
) -> None:
    # Given verdicts in CSV about a campaign the model never saw
    verdicts = tmp_path / "verdicts.csv"
    rows = [f"spam,zorblax airdrop {word} claim your tokens" for word in ("now", "today", "friends", "free", "hurry")]
    verdicts.write_text("label,text\n" + "\n".join(rows) + "\nham,see you at the cafe later\n")
    out = tmp_path / "child.lbk"
    # When learning them, by a fine-tune (the default) or a joint retrain
    chosen = ["--method", method] if method else []
    status = main(["finetune", "--model", str(bundle_path), "--data", str(verdicts), "--out", str(out), *chosen])
    # Then the child records its parent and how it was made, the gate's reason is printed, and the phases
    # reported their progress
    captured = capsys.readouterr()
    assert status == 0
    child = Bundle.read(str(out)).metadata
    assert child["parent_version"] == "v1" and child["training"]["kind"] == (method or "finetune")
    assert "promoted: gate-set: accuracy" in captured.out
    assert all(phase in captured.err for phase in progress)


def test_cli_finetune_holds_lies_writes_nothing_and_exits_3(
    bundle_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given verdicts that call spam worded like the training data "ham"
    spam = [item for item in make_tiny_dataset(size=60, seed=99) if item.label == "spam"]
    verdicts = tmp_path / "lies.jsonl"
    verdicts.write_text("".join(json.dumps({"text": item.input, "label": "ham"}) + "\n" for item in spam))
    out = tmp_path / "child.lbk"

    # When fine-tuning with --json
    status = main(["finetune", "--model", str(bundle_path), "--data", str(verdicts), "--out", str(out), "--json"])

    # Then the verdicts are listed as held, with the evidence, and no bundle is written
    outcome = json.loads(capsys.readouterr().out)
    assert status == 3 and not out.exists()
    assert outcome["status"] == "rejected" and outcome["reason"] == "every verdict was held for review"
    assert len(outcome["held"]) == len(spam) and outcome["held"][0]["evidence"]["model_label"] == "spam"


def test_cli_finetune_refuses_verdicts_over_the_api_size_limit(
    bundle_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a verdicts file with one text longer than MAX_TEXT_CHARS
    from lodbrok.settings import get_settings

    monkeypatch.setenv("MAX_TEXT_CHARS", "100")
    get_settings.cache_clear()
    verdicts = tmp_path / "verdicts.jsonl"
    rows = [{"text": "zorblax airdrop", "label": "spam"}, {"text": "x" * 101, "label": "ham"}]
    verdicts.write_text("".join(json.dumps(row) + "\n" for row in rows))

    # When fine-tuning
    try:
        status = main(
            ["finetune", "--model", str(bundle_path), "--data", str(verdicts), "--out", str(tmp_path / "x.lbk")]
        )
    finally:
        get_settings.cache_clear()

    # Then it is refused before any training, naming the row and the limit
    assert status == 2
    assert (
        "1 verdicts (rows [2]) hold a text or string value longer than MAX_TEXT_CHARS (100" in capsys.readouterr().err
    )


def test_cli_bad_dataset_reports_line_numbers(
    bundle_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given verdicts with an unknown label on line 3 and an empty text on line 4
    verdicts = tmp_path / "bad.csv"
    verdicts.write_text("label,text\nspam,ok text\nphishing,bad label\nham,\n")
    # When fine-tuning
    status = main(["finetune", "--model", str(bundle_path), "--data", str(verdicts), "--out", str(tmp_path / "x.lbk")])
    # Then it fails with both lines named and no traceback
    error = capsys.readouterr().err
    assert status == 2
    assert ":3:" in error and ":4:" in error


def test_cli_corrupt_bundle_is_refused(tmp_path: Path, bundle_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a bundle with flipped bytes in the middle
    data = bytearray(bundle_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt = tmp_path / "corrupt.lbk"
    corrupt.write_bytes(bytes(data))
    # Then predicting with it fails cleanly
    assert main(["predict", "--model", str(corrupt), "hello"]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_versions_without_bucket_explains(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MODEL_BUCKET", raising=False)
    from lodbrok.settings import get_settings

    get_settings.cache_clear()
    assert main(["versions"]) == 2
    assert "--bucket" in capsys.readouterr().err
