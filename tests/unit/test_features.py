from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lodbrok
from lodbrok.model.features import (
    DOCUMENT_TOKEN,
    FEATURIZER_VERSION,
    Featurizer,
    FeaturizerConfig,
    canonical_key,
    normalize_text,
)

SAMPLES: list[str | dict[str, object]] = [
    "WIN a FREE prize now!!! Call 09061701461 or visit www.win-big.biz/claim",
    "Hey, are we still on for lunch tomorrow? 🍕",
    "日本語のテキストと English mixed",
    {"name": "Bob", "email": "bob@x.biz", "area": None, "member_since": "2024-05-01T10:00:00Z", "age": 42},
]

UNICODE_TEXTS = [
    "😀👍🏽👨‍👩‍👧‍👦 emoji party 🎉",
    "中文文本\uff0c日本語のテキスト、한국어 텍스트",
    "שלום עולם مرحبا بالعالم",
    "e\u0301\u0301\u0301 a\u0308\u0323 Z\u0351\u0352\u0353",
    "lone surrogate \ud800 and \udfff here",
    "nul\x00inside\x00\x00text",
    "\ufdfa\ufdfa",
    "\u200b\u200d\ufeff\u2028\u2029",
    "   \t\n  ",
]

CHILD_SCRIPT = """
import json, sys
from lodbrok.model.features import Featurizer
samples = json.loads(sys.stdin.read())
print(json.dumps(Featurizer().transform(samples).tolist()))
"""


LEGACY_CONFIG = FeaturizerConfig(version=1, max_tokens=384, char_ngram_min=3)


def small_featurizer(**changes: int) -> Featurizer:
    return Featurizer(FeaturizerConfig(**changes))


def child_env(hash_seed: str) -> dict[str, str]:
    package_root = str(Path(lodbrok.__file__).resolve().parents[1])
    existing = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONHASHSEED": hash_seed,
        "PYTHONPATH": package_root + (os.pathsep + existing if existing else ""),
    }


def body(tokens: list[str]) -> list[str]:
    """The tokens after the leading document token (which every item carries)."""
    assert tokens[:1] == [DOCUMENT_TOKEN], f"the first token must be {DOCUMENT_TOKEN!r}, got {tokens[:1]}"
    return tokens[1:]


def token_id_map(featurizer: Featurizer, item: str | dict[str, object]) -> dict[str, int]:
    return dict(zip(featurizer.tokens(item), featurizer.token_ids(item), strict=True))


def assert_valid_batch(batch: np.ndarray, rows: int, config: FeaturizerConfig) -> None:
    assert batch.shape == (rows, config.max_tokens)
    assert batch.dtype == np.int32
    assert batch.min() >= 0
    assert batch.max() < config.num_buckets
    for row in batch:
        used = int(np.count_nonzero(row))
        assert (row[:used] >= 1).all(), "ids must be >= 1 and packed at the start of the row"
        assert (row[used:] == 0).all(), "padding must be 0 and only at the end of the row"


# --- determinism -----------------------------------------------------------------------------------


def test_featurizer_ids_identical_across_instances() -> None:
    # Given two independent featurizers with the default config
    first, second = Featurizer(), Featurizer()

    # When both transform the same inputs
    ids_first = first.transform(SAMPLES)
    ids_second = second.transform(SAMPLES)

    # Then the ids are identical and not trivially empty
    np.testing.assert_array_equal(ids_first, ids_second)
    assert (np.count_nonzero(ids_first, axis=1) > 0).all()


def test_featurizer_ids_identical_across_processes_with_different_hash_seeds() -> None:
    # Given the ids computed in this process
    expected = Featurizer().transform(SAMPLES).tolist()

    # When two child interpreters with different PYTHONHASHSEED values featurize the same inputs
    results = []
    for hash_seed in ("1", "4242"):
        completed = subprocess.run(
            [sys.executable, "-c", CHILD_SCRIPT],
            input=json.dumps(SAMPLES),
            capture_output=True,
            text=True,
            env=child_env(hash_seed),
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        results.append(json.loads(completed.stdout))

    # Then every process produces exactly the same ids (no reliance on Python's salted hash())
    assert results[0] == expected
    assert results[1] == expected


# --- shape and range -------------------------------------------------------------------------------


def test_featurizer_transform_shape_dtype_range_and_padding() -> None:
    # Given the default featurizer
    featurizer = Featurizer()

    # When a batch of mixed texts and records is transformed
    batch = featurizer.transform(SAMPLES)

    # Then it is (n, max_tokens) int32, ids lie in [1, num_buckets) and 0 pads only the tail
    assert_valid_batch(batch, len(SAMPLES), featurizer.config)
    short_row = featurizer.transform(["hi there"])[0]
    assert 0 < np.count_nonzero(short_row) < featurizer.config.max_tokens


def test_featurizer_transform_small_bucket_count_keeps_ids_in_range() -> None:
    # Given a featurizer with only 8 buckets
    featurizer = small_featurizer(num_buckets=8, max_tokens=64)

    # When many distinct tokens are featurized
    batch = featurizer.transform([f"word{index} other{index * 7}" for index in range(200)])

    # Then every non-padding id is one of 1..7 and several buckets are actually used
    assert_valid_batch(batch, 200, featurizer.config)
    assert set(np.unique(batch[batch > 0]).tolist()) <= set(range(1, 8))
    assert len(np.unique(batch[batch > 0])) > 3


def test_featurizer_transform_empty_batch() -> None:
    # Given no inputs
    # When they are transformed
    batch = Featurizer().transform([])

    # Then the result is an empty (0, max_tokens) int32 array
    assert batch.shape == (0, FeaturizerConfig().max_tokens)
    assert batch.dtype == np.int32


def test_featurizer_empty_input_gives_document_token_only_row() -> None:
    # Given an empty text, a whitespace-only text and an empty record
    featurizer = Featurizer()

    # When they are transformed
    batch = featurizer.transform(["", " \t\n ", {}])

    # Then each row is the document token followed by pure padding (never all zeros, so the
    # model's masked mean cannot divide by zero)
    document_id = featurizer.token_ids("")[0]
    assert featurizer.tokens("") == [DOCUMENT_TOKEN]
    assert featurizer.tokens({}) == [DOCUMENT_TOKEN]
    assert batch.shape == (3, featurizer.config.max_tokens)
    assert (batch[:, 0] == document_id).all()
    assert not batch[:, 1:].any()


def test_featurizer_every_row_starts_with_the_same_document_id() -> None:
    # Given varied texts and records
    featurizer = Featurizer()

    # When they are transformed
    batch = featurizer.transform([*SAMPLES, *UNICODE_TEXTS])

    # Then no row is all padding and all share the document id in the first slot
    assert len(set(batch[:, 0].tolist())) == 1
    assert (batch[:, 0] >= 1).all()


# --- unicode robustness ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", UNICODE_TEXTS, ids=range(len(UNICODE_TEXTS)))
def test_featurizer_unicode_text_never_crashes(text: str) -> None:
    # Given an awkward unicode text (emoji, CJK, RTL, combining marks, lone surrogates, NULs...)
    featurizer = Featurizer()

    # When it is transformed, alone and as a record field, and canonicalized
    batch = featurizer.transform([text, {"field": text}])
    key = canonical_key(text)

    # Then a valid batch comes out and the ids are reproducible
    assert_valid_batch(batch, 2, featurizer.config)
    np.testing.assert_array_equal(batch, Featurizer().transform([text, {"field": text}]))
    assert key.startswith("t:")


def test_featurizer_unicode_scripts_produce_tokens() -> None:
    # Given texts made only of emoji, CJK, RTL and a lone surrogate
    featurizer = Featurizer()

    # When they are tokenized
    emoji = featurizer.tokens("😀 🎉")
    cjk = featurizer.tokens("日本語")
    rtl = featurizer.tokens("שלום")
    surrogate = featurizer.tokens("\ud800")

    # Then non-latin characters are kept as tokens rather than silently dropped
    assert "😀" in emoji and "🎉" in emoji
    assert "日本語" in cjk
    assert "שלום" in rtl
    assert body(surrogate)[0] == "\ud800"


def test_featurizer_combining_marks_are_normalized() -> None:
    # Given the same word written precomposed and decomposed
    featurizer = Featurizer()

    # When both are featurized
    composed = featurizer.transform(["café"])
    decomposed = featurizer.transform(["cafe\u0301"])

    # Then NFKC normalization makes them identical
    np.testing.assert_array_equal(composed, decomposed)


# --- bounds on huge inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunk",
    ["spam offer ", "x", "1", "😀", "http://a.com/ "],
    ids=["words", "one-long-word", "digits", "emoji", "urls"],
)
def test_featurizer_one_megabyte_input_is_bounded(chunk: str) -> None:
    # Given a text of roughly 1 MB
    featurizer = Featurizer()
    huge = chunk * (1_000_000 // len(chunk))

    # When it is tokenized and transformed
    tokens = featurizer.tokens(huge)
    batch = featurizer.transform([huge, {"body": huge}])

    # Then only the first max_chars characters count and the row is capped at max_tokens
    assert tokens == featurizer.tokens(huge[: featurizer.config.max_chars])
    assert 0 < len(tokens) <= featurizer.config.max_tokens
    assert_valid_batch(batch, 2, featurizer.config)


def test_featurizer_max_chars_ignores_text_beyond_limit() -> None:
    # Given a small max_chars and two texts differing only after the limit
    featurizer = small_featurizer(max_chars=20)
    prefix = "a" * 10 + " " + "b" * 9

    # When both are transformed
    batch = featurizer.transform([prefix + " lottery winner", prefix + " see you soon"])

    # Then their features are identical
    np.testing.assert_array_equal(batch[0], batch[1])


# --- token priority --------------------------------------------------------------------------------


def test_featurizer_tokens_words_and_shapes_before_bigrams_before_char_ngrams() -> None:
    # Given a short text
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens("free prize money")

    # Then words come first, then the text's shape tokens, then bigrams, then character n-grams
    content = body(tokens)
    assert content[:3] == ["free", "prize", "money"]
    assert content[3:6] == ["<caps0>", "<digits0>", "<len0>"]
    assert content[6:8] == ["free prize", "prize money"]
    assert all(token.startswith("#") for token in content[8:])
    assert "#<fr" in tokens and "#free>" in tokens


def test_featurizer_version_1_keeps_its_tokens() -> None:
    # Given the featurizer of a bundle written before version 2
    featurizer = Featurizer(LEGACY_CONFIG)

    # When it is tokenized
    tokens = featurizer.tokens("free prize money")

    # Then words come first, then bigrams, then character n-grams
    content = body(tokens)
    assert content[:3] == ["free", "prize", "money"]
    assert content[3:5] == ["free prize", "prize money"]
    assert all(token.startswith("#") for token in content[5:])
    assert "#<fr" in tokens and "#free>" in tokens


def test_featurizer_truncation_drops_char_ngrams_first() -> None:
    # Given room for exactly the words, shapes and bigrams of a 5-word text
    featurizer = small_featurizer(max_tokens=13)
    text = "alpha bravo charlie delta echo"

    # When it is tokenized
    tokens = featurizer.tokens(text)

    # Then all words, shapes and bigrams survive and no n-gram made it in
    assert body(tokens) == [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "<caps0>",
        "<digits0>",
        "<len0>",
        "alpha bravo",
        "bravo charlie",
        "charlie delta",
        "delta echo",
    ]
    assert len(featurizer.token_ids(text)) == 13


def test_featurizer_shape_tokens_describe_the_look_of_a_text() -> None:
    # Given a shouted prize text with money and a phone number, and a quiet chat text
    featurizer = Featurizer()

    # When they are tokenized
    loud = featurizer.tokens("WINNER!! Claim your £900 prize, call 09061 701461 NOW")
    quiet = featurizer.tokens("see you at lunch")

    # Then the loud one carries phone, money, capitals and exclamation shapes and the quiet one none of them
    assert {"<phone>", "<money>", "<bang>", "<caps1>"} <= set(loud)
    assert not {"<phone>", "<money>", "<bang>"} & set(quiet)
    assert "<caps0>" in quiet


def test_featurizer_counts_each_token_once() -> None:
    # Given a text that repeats a word
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens("free free free")

    # Then every token appears once, and the legacy version kept the repeats
    assert len(tokens) == len(set(tokens))
    assert Featurizer(LEGACY_CONFIG).tokens("free free free").count("free") == 3


def test_featurizer_short_words_get_character_ngrams() -> None:
    # Given a text of one- and two-letter words
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens("u r 2")

    # Then they get n-grams (version 1 skipped words shorter than three characters)
    assert "#<u>" in tokens and "#<0>" in tokens
    assert not any(token.startswith("#") for token in Featurizer(LEGACY_CONFIG).tokens("u r 2"))


def test_featurizer_truncation_keeps_words_when_text_is_long() -> None:
    # Given more distinct words than max_tokens
    featurizer = small_featurizer(max_tokens=16)
    words = [f"w{index:03d}" for index in range(40)]

    # When it is tokenized
    tokens = featurizer.tokens(" ".join(words))

    # Then the row is exactly the first max_tokens words: no bigram or n-gram crowds a word out
    assert body(tokens) == words[:15]


# --- numbers and URLs ------------------------------------------------------------------------------


def test_featurizer_number_shapes_in_text() -> None:
    # Given a text with an 11-digit phone number and a 4-digit code
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens("call 09061701461 code 1234")

    # Then each number yields its digit-count shape token next to the literal
    assert "09061701461" in tokens and "<num11>" in tokens
    assert "1234" in tokens and "<num4>" in tokens
    assert tokens.index("<num11>") == tokens.index("09061701461") + 1


def test_featurizer_number_shapes_generalize_across_numbers() -> None:
    # Given two different 11-digit numbers
    featurizer = Featurizer()

    # When they are featurized
    first = token_id_map(featurizer, "09061701461")
    second = token_id_map(featurizer, "07123456789")

    # Then the literals differ but both carry the same <num11> feature and digit-masked n-grams
    assert first["09061701461"] != second["07123456789"]
    assert first["<num11>"] == second["<num11>"]
    assert first["#00000"] == second["#00000"]


def test_featurizer_url_with_www_yields_url_and_domain_tokens() -> None:
    # Given a text with a www. URL
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens("claim at www.win-big.biz/claim?id=7 today")

    # Then a generic <url> token and the bare domain are emitted, and the URL's own words too
    assert "<url>" in tokens
    assert "url:win-big.biz" in tokens
    assert "claim" in tokens and "today" in tokens
    assert {"www", "win", "big", "biz", "id", "#<biz>"} <= set(tokens)


def test_featurizer_version_2_keeps_a_url_to_its_url_and_domain_tokens() -> None:
    # Given a version 2 featurizer (bundles made before URLs were read as words)
    featurizer = Featurizer(FeaturizerConfig(version=2))

    # When a text with a URL is tokenized
    tokens = featurizer.tokens("claim at www.win-big.biz/claim?id=7 today")

    # Then the URL gives only its <url> and domain tokens, as it did
    assert "<url>" in tokens and "url:win-big.biz" in tokens
    assert "id" not in tokens and "biz" not in tokens and "www" not in tokens


def test_featurizer_bare_domain_yields_url_and_domain_tokens() -> None:
    # Given a text with a bare domain
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens("go to prizes.com now")

    # Then it is recognized as a URL
    assert body(tokens)[:2] == ["<url>", "url:prizes.com"]


def test_featurizer_url_with_scheme_yields_its_domain_token() -> None:
    # Given texts with scheme-prefixed URLs on two different hosts
    featurizer = Featurizer()

    # When they are tokenized
    first = featurizer.tokens("click https://evil.biz/win now")
    second = featurizer.tokens("see http://www.example.org/page")

    # Then each carries its own host as the domain token
    assert "<url>" in first and "<url>" in second
    assert "url:evil.biz" in first, f"scheme URL lost its domain, got {first[:3]}"
    assert "url:example.org" in second, f"scheme URL lost its domain, got {second[:3]}"


# --- records ---------------------------------------------------------------------------------------


def test_featurizer_record_none_and_empty_become_none_token() -> None:
    # Given a record with a None and an empty-string field
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens({"area": None, "phone": ""})

    # Then both are marked missing
    assert body(tokens) == ["area=<none>", "phone=<none>"]


def test_featurizer_record_iso_dates_become_calendar_tokens() -> None:
    # Given ISO dates with and without time and zone (2024-05-01 is a Wednesday)
    featurizer = Featurizer()

    # When records holding them are tokenized
    zulu = featurizer.tokens({"since": "2024-05-01T10:00:00Z"})
    plain = featurizer.tokens({"since": "2024-05-01"})
    offset = featurizer.tokens({"since": "2023-12-31 23:59:59.5+02:00"})

    # Then they become year/month/weekday tokens and nothing else
    assert body(zulu) == ["since:year=2024", "since:month=5", "since:weekday=2"]
    assert plain == zulu
    assert body(offset) == ["since:year=2023", "since:month=12", "since:weekday=6"]


def test_featurizer_record_invalid_date_falls_back_to_text() -> None:
    # Given a date-shaped value that is not a real date
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens({"since": "2024-02-30"})

    # Then it is treated as text, not as calendar tokens
    assert "since=<present>" in tokens
    assert not any(":year=" in token for token in tokens)


def test_featurizer_record_bool_and_number_handling() -> None:
    # Given a record with booleans and numbers of several sizes and signs
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens(
        {"verified": True, "banned": False, "phone": 12345678901, "age": -42, "score": 3.75, "zero": 0}
    )

    # Then booleans keep their value (not treated as numbers) and numbers become digit-count shapes
    assert body(tokens) == [
        "age=<num2>",
        "banned=False",
        "phone=<num11>",
        "score=<num1>",
        "verified=True",
        "zero=<num1>",
    ]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_featurizer_record_non_finite_float_does_not_crash(value: float) -> None:
    # Given a record with a non-finite float (valid in Python's json)
    record = json.loads(json.dumps({"score": value}))

    # When it is featurized
    batch = Featurizer().transform([record])

    # Then a valid row comes out
    assert batch.shape == (1, FeaturizerConfig().max_tokens), "non-finite number must not crash the featurizer"
    assert batch.any()


def test_featurizer_record_text_field_tokens_are_prefixed_with_field() -> None:
    # Given a record with a text field
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens({"Subject": "Free Prize"})

    # Then the (case-folded) field name prefixes the presence marker, words, shapes and bigrams
    assert body(tokens)[:7] == [
        "subject=<present>",
        "subject:free",
        "subject:prize",
        "subject:<caps0>",
        "subject:<digits0>",
        "subject:<len0>",
        "subject:free prize",
    ]


def test_featurizer_record_field_name_is_part_of_features() -> None:
    # Given the same value in two different fields, and as a plain text
    featurizer = Featurizer()

    # When each is featurized
    as_name = token_id_map(featurizer, {"name": "winner"})
    as_email = token_id_map(featurizer, {"email": "winner"})
    as_text = token_id_map(featurizer, "winner")

    # Then every word-level id differs per field (only field-free character n-grams are shared)
    word_ids = {
        source: {
            token_id for token, token_id in tokens.items() if token != DOCUMENT_TOKEN and not token.startswith("#")
        }
        for source, tokens in (("name", as_name), ("email", as_email), ("text", as_text))
    }
    assert word_ids["name"] and word_ids["email"] and word_ids["text"]
    assert not word_ids["name"] & word_ids["email"]
    assert not word_ids["name"] & word_ids["text"]
    assert not word_ids["email"] & word_ids["text"]
    assert featurizer.token_ids({"a": 5}) != featurizer.token_ids({"b": 5})
    assert featurizer.token_ids({"a": None}) != featurizer.token_ids({"b": None})
    assert featurizer.token_ids({"a": True}) != featurizer.token_ids({"b": True})


def test_featurizer_record_key_order_does_not_matter() -> None:
    # Given the same record with its keys in two orders
    featurizer = Featurizer()
    forward = {"name": "Bob", "email": "bob@x.biz", "age": 42, "since": "2024-05-01", "area": None}
    backward = dict(reversed(list(forward.items())))

    # When both are transformed
    batch = featurizer.transform([forward, backward])

    # Then the ids are identical
    assert list(forward) != list(backward)
    np.testing.assert_array_equal(batch[0], batch[1])


def test_featurizer_record_nested_value_is_featurized_as_text() -> None:
    # Given a record with a list value
    featurizer = Featurizer()

    # When it is tokenized
    tokens = featurizer.tokens({"tags": ["promo", "urgent"]})

    # Then the value is featurized through its text form
    assert "tags=<present>" in tokens
    assert "tags:promo" in tokens and "tags:urgent" in tokens


# --- canonical key and normalization ---------------------------------------------------------------


def test_normalize_text_casefolds_collapses_whitespace_and_nfkc() -> None:
    # Given texts differing in case, whitespace and compatibility forms
    # When they are normalized
    # Then they become equal
    assert normalize_text("  Hello\t\nWORLD  ") == "hello world"
    assert normalize_text("\uff26\uff35\uff2c\uff2c width") == "full width"
    assert normalize_text("Straße") == normalize_text("STRASSE")
    assert normalize_text("") == ""


def test_canonical_key_equal_for_case_and_whitespace_variants() -> None:
    # Given variants of one text differing only in case and whitespace
    variants = ["Win a FREE prize", "  win   a free\tPRIZE \n", "WIN A FREE PRIZE"]

    # When their canonical keys are computed
    keys = {canonical_key(variant) for variant in variants}

    # Then there is one key, and a different text has another
    assert keys == {"t:win a free prize"}
    assert canonical_key("win a free prize!") not in keys


def test_canonical_key_equal_for_reordered_record_keys() -> None:
    # Given one record with keys in different orders and string values in different case
    first = {"name": "Bob", "email": "BOB@x.biz", "age": 42, "area": None}
    second = {"area": None, "age": 42, "email": "bob@X.biz ", "name": "  bob"}

    # When their canonical keys are computed
    # Then they match, and differ once a value really changes
    assert canonical_key(first) == canonical_key(second)
    assert canonical_key(first) != canonical_key({**first, "age": 43})
    assert canonical_key(first) != canonical_key({**first, "area": "north"})


def test_canonical_key_text_and_record_never_collide() -> None:
    # Given a text and a record with the same visible content
    # When their keys are computed
    # Then the keys are distinguished by kind
    assert canonical_key("text=hello") != canonical_key({"text": "hello"})
    assert canonical_key("text=hello").startswith("t:")
    assert canonical_key({"text": "hello"}).startswith("r:")


# --- hashing, not a vocabulary ---------------------------------------------------------------------


def test_featurizer_unseen_token_maps_into_valid_bucket() -> None:
    # Given a fresh featurizer that was never fitted on anything, and words it cannot have seen
    config = FeaturizerConfig()
    novel = ["zqxjvkwplm", "ƒλøßßü", "unseen_token_9d2f4c"]

    # When they are turned into ids by two independent featurizers
    ids = [Featurizer(config).token_ids(word) for word in novel]
    again = [Featurizer(config).token_ids(word) for word in novel]

    # Then every id is a non-padding bucket, stable, and distinct words get distinct first ids
    for row in ids:
        assert row, "an unseen word must produce tokens"
        assert all(1 <= token_id < config.num_buckets for token_id in row)
    assert ids == again
    assert len({row[1] for row in ids}) == len(novel)


def test_featurizer_has_no_vocabulary_to_fit() -> None:
    # Given a featurizer
    featurizer = Featurizer()

    # When a word is featurized before and after many other texts
    before = featurizer.token_ids("brandnewword")
    featurizer.transform([f"filler text number {index}" for index in range(100)])
    after = featurizer.token_ids("brandnewword")

    # Then its ids do not depend on what was seen in between
    assert before == after


# --- config ----------------------------------------------------------------------------------------


def test_featurizer_config_round_trips_through_dict() -> None:
    # Given a non-default config
    config = FeaturizerConfig(num_buckets=1024, max_tokens=64, max_chars=500, char_ngram_min=2, char_ngram_max=4)

    # When it is serialized to a dict (and JSON) and read back
    raw = json.loads(json.dumps(config.to_dict()))
    restored = FeaturizerConfig.from_dict(raw)

    # Then it is equal and featurizes identically
    assert restored == config
    assert raw["version"] == FEATURIZER_VERSION
    np.testing.assert_array_equal(Featurizer(restored).transform(SAMPLES), Featurizer(config).transform(SAMPLES))


def test_featurizer_config_from_dict_rejects_other_version() -> None:
    # Given a config dict from a future featurizer version
    raw = {**FeaturizerConfig().to_dict(), "version": FEATURIZER_VERSION + 1}

    # When it is loaded
    # Then it is refused with a message naming the version
    with pytest.raises(ValueError, match=f"featurizer version {FEATURIZER_VERSION + 1} is not supported"):
        FeaturizerConfig.from_dict(raw)


def test_featurizer_config_from_dict_rejects_missing_field() -> None:
    # Given a config dict missing a field
    raw = FeaturizerConfig().to_dict()
    del raw["num_buckets"]

    # When it is loaded
    # Then it fails instead of silently using a default
    with pytest.raises(KeyError, match="num_buckets"):
        FeaturizerConfig.from_dict(raw)


def test_featurizer_config_changes_change_ids() -> None:
    # Given two configs differing only in bucket count
    text = "free prize inside"

    # When the same text is featurized with each
    default_ids = Featurizer().token_ids(text)
    other_ids = small_featurizer(num_buckets=1000).token_ids(text)

    # Then the ids differ: the config really decides the features
    assert default_ids != other_ids
    assert all(1 <= token_id < 1000 for token_id in other_ids)


def test_featurizer_long_hyphenated_text_is_linear() -> None:
    # Given a field of the kind that made the URL pattern backtrack quadratically
    featurizer = Featurizer()
    record = {f"field{index}": "a-" * 2000 for index in range(20)}
    # When it is featurized, then it completes with bounded output (the suite's time budget catches a regression)
    assert len(featurizer.token_ids(record)) <= featurizer.config.max_tokens


def test_canonical_key_distinguishes_value_types_and_folds_field_names() -> None:
    # Then a number and its string differ, while field-name case (which the featurizer folds) does not
    assert canonical_key({"a": 1}) != canonical_key({"a": "1"})
    assert canonical_key({"Bio": "x"}) == canonical_key({"bio": "x"})


# --- which pieces make each token (explanations) -------------------------------------------------------------


@pytest.mark.parametrize("config", [FeaturizerConfig(), LEGACY_CONFIG, FeaturizerConfig(version=2)])
@pytest.mark.parametrize("sample", SAMPLES)
def test_attributed_token_ids_are_the_token_ids(config: FeaturizerConfig, sample: str | dict[str, object]) -> None:
    # Given any featurizer version and input
    featurizer = Featurizer(config)

    # When the tokens are attributed to the pieces that make them
    ids, removed_by = featurizer.attributed_token_ids(sample)

    # Then they are exactly the ids the model is fed, one set of pieces per id
    assert ids == featurizer.token_ids(sample)
    assert len(removed_by) == len(ids)


def test_attributed_tokens_need_every_word_of_a_pair_and_survive_a_word_that_shares_them() -> None:
    # Given a text whose words share an n-gram ("#<th" of "the" and "this") and form word pairs
    featurizer = Featurizer()
    text = "the cat saw this"
    tokens = featurizer.tokens(text)
    _, removed_by = featurizer.attributed_token_ids(text)
    pieces = dict(zip(tokens, removed_by, strict=True))

    # Then a word's own token goes with the word, a pair goes with either of its words, a shared n-gram goes
    # with neither word alone, and the document token belongs to no piece
    assert pieces["cat"] == {(None, "cat")}
    assert pieces["the cat"] == {(None, "the"), (None, "cat")}
    assert pieces["#<th"] == frozenset()
    assert pieces[DOCUMENT_TOKEN] == frozenset()
    assert pieces["<len0>"] == {(None, "<len0>")}


def test_attributed_tokens_of_a_record_name_their_field() -> None:
    # Given a record with a text field, a number and an empty field
    featurizer = Featurizer()
    record = {"Subject": "You won", "attachments": 2, "cc": None}
    _, removed_by = featurizer.attributed_token_ids(record)

    # Then every piece names the (case-folded) field it came from, and the field-presence token belongs to none
    pieces = set().union(*removed_by)
    assert {("subject", "won"), ("subject", "you"), ("attachments", "2"), ("cc", "<none>")} <= pieces
    assert all(field in {"subject", "attachments", "cc"} for field, _ in pieces)
    presence = featurizer.tokens(record).index("subject=<present>")
    assert removed_by[presence] == frozenset()


# --- the cut before n-grams keeps every feature ------------------------------------------------------------------


def featurized_corpus() -> list[str | dict[str, object]]:
    """The demo data, the samples, and long texts and records that fill the row before their last field."""
    from lodbrok.model.data import load_demo_dataset

    words = [item.input for item in load_demo_dataset() if isinstance(item.input, str)][:1200]
    long_texts = [" ".join(words[start : start + 60]) for start in range(0, 1200, 60)]
    records = [{f"field{index}": words[start + index] for index in range(64)} for start in range(0, 640, 64)]
    return [*words, *SAMPLES, *UNICODE_TEXTS, *long_texts, *records, {"a": "é" * 5000, "b": "x y " * 2500}]


def digest(values: object) -> str:
    return hashlib.sha256(json.dumps(values, default=sorted).encode()).hexdigest()[:16]


GOLDEN_IDS = {1: "618a3ad1031dfb24", 2: "76f9625fa8b67ab8", 3: "bb0fa83368088167"}
GOLDEN_ATTRIBUTION = {1: "f1321bcbe6eeaf10", 2: "2a7c8a5e84883f97", 3: "7195af18c68a10ee"}


@pytest.mark.parametrize("config", [LEGACY_CONFIG, FeaturizerConfig(version=2), FeaturizerConfig()], ids=str)
def test_featurizer_ids_are_those_every_bundle_was_trained_on(config: FeaturizerConfig) -> None:
    # Given the demo data, samples, and texts and records longer than a row
    featurizer = Featurizer(config)
    corpus = featurized_corpus()

    # When every item is featurized and attributed
    ids = [featurizer.token_ids(item) for item in corpus]
    fitting = [item for item, row in zip(corpus, ids, strict=True) if len(row) < config.max_tokens]
    attribution = [
        [sorted(map(list, pieces)) for pieces in featurizer.attributed_token_ids(item)[1]] for item in fitting
    ]

    # Then the ids are those computed before featurizing stopped at the row's end (digests recorded then), and so
    # are the pieces of every input that fits in a row
    assert digest(ids) == GOLDEN_IDS[config.version]
    assert digest(attribution) == GOLDEN_ATTRIBUTION[config.version]


def test_featurizer_makes_no_ngrams_past_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a record of 64 fields of 5,000 characters, each of distinct words, that fills a row with its words
    featurizer = Featurizer()
    record = {f"field{index}": " ".join(f"w{index}x{word}" for word in range(700))[:5000] for index in range(64)}
    made: list[str] = []
    original = Featurizer._char_ngrams
    monkeypatch.setattr(
        Featurizer, "_char_ngrams", lambda self, word, cache: made.append(word) or original(self, word, cache)
    )

    # When it is featurized
    ids = featurizer.token_ids(record)

    # Then the row is full and not one n-gram was made: the cut comes before them
    assert len(ids) == featurizer.config.max_tokens
    assert made == []


def test_featurizer_makes_a_repeated_words_ngrams_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a record whose 32 fields repeat the same two words (4,000 times each), with room in the row for n-grams
    featurizer = Featurizer()
    record = {f"field{index}": "x y " * 1250 for index in range(32)}
    made: list[str] = []
    original = Featurizer._char_ngrams
    monkeypatch.setattr(
        Featurizer, "_char_ngrams", lambda self, word, cache: made.append(word) or original(self, word, cache)
    )

    # When it is featurized, then each distinct word's n-grams are asked for once
    featurizer.token_ids(record)
    assert sorted(made) == ["x", "y"]
