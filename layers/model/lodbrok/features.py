"""The one featurizer: text or record -> fixed-length array of hashed token ids.

Training and serving both call `Featurizer.transform`, so a model can never see features computed
differently from the ones it learned on. Tokens are hashed into buckets rather than looked up in a
vocabulary, so fine-tuning can learn words the base model never saw. Id 0 is padding.

Version 2 was chosen on repeated k-fold of the demo data (`make bench-quality`): every word gets
character n-grams from 2 characters up (short tokens such as "u", "txt" or "£" carry much of the spam
signal), a text gets shape tokens (phone number, money, share of capitals, digits, length, "!"), and
each token counts once, so the row holds more distinct evidence before it is truncated. Version 3 (the
default) also reads a URL's own words and n-grams ("http", "com", "watch", a referral path) besides its
`<url>` and domain tokens: links are what comment spam is made of, and one `<url>` token was too little
evidence to learn that from verdicts (`make bench-learning`); it scored better on the SMS folds too.
Older bundles keep their exact features.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from lodbrok.items import ModelInput, RecordInput

FEATURIZER_VERSION = 3
SUPPORTED_VERSIONS = (1, 2, 3)
DOCUMENT_TOKEN = "<doc>"

# A piece of an input that an explanation can name: (record field or None for a text, a word, URL, value or
# shape token). A run is a list of tokens that all need the same pieces.
Piece = tuple[str | None, str]
Run = tuple[tuple[Piece, ...], list[str]]

_WORD = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)
# Bare domains may only start where a run of word characters starts; with `\b` every position in a
# long hyphenated run was a new match attempt and matching went quadratic.
_URL = re.compile(r"(?:https?://|www\.)\S+|(?<![\w-])[\w-]+\.(?:com|net|org|co\.uk|biz|info|io)\b\S*")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_DIGITS = re.compile(r"\d+")
_PHONE = re.compile(r"\+?\d[\d -]{7,}\d")
_MONEY = re.compile(r"[£$€]\s?\d|\d(?:p|ppm|pence|pounds?)\b")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


@dataclass(frozen=True)
class FeaturizerConfig:
    """Everything that decides the features; stored in every bundle."""

    version: int = FEATURIZER_VERSION
    num_buckets: int = 2**17
    max_tokens: int = 512
    max_chars: int = 4000
    char_ngram_min: int = 2
    char_ngram_max: int = 5

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FeaturizerConfig:
        config = cls(**{key: int(raw[key]) for key in cls.__dataclass_fields__})
        if config.version not in SUPPORTED_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_VERSIONS))
            raise ValueError(f"featurizer version {config.version} is not supported (supported: {supported})")
        return config


def normalize_text(text: str) -> str:
    """Unicode-normalize, case-fold and collapse whitespace: equal texts after this are duplicates."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def input_digest(canonical: str) -> str:
    """A stored key for an input (`canonical_key`): its sha256, so tables keyed by input hold no user text."""
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def canonical_key(item: ModelInput) -> str:
    """A stable string identity for an input, used for duplicate detection and cache keys."""
    if isinstance(item, str):
        return "t:" + normalize_text(item)
    parts = sorted(f"{str(name).casefold()}={_canonical_value(value)}" for name, value in item.items())
    return "r:" + "\x1f".join(parts)


def _canonical_value(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, str):
        return "s:" + normalize_text(value)
    return f"{type(value).__name__}:{value!r}"


class Featurizer:
    """Turns texts and records into int32 id arrays of shape (n, max_tokens)."""

    def __init__(self, config: FeaturizerConfig | None = None) -> None:
        self.config = config or FeaturizerConfig()

    def transform(self, items: Iterable[ModelInput]) -> np.ndarray:
        rows = [self.token_ids(item) for item in items]
        batch = np.zeros((len(rows), self.config.max_tokens), dtype=np.int32)
        for index, ids in enumerate(rows):
            batch[index, : len(ids)] = ids
        return batch

    def token_ids(self, item: ModelInput) -> list[int]:
        return self._hashed(self.tokens(item))

    def _hashed(self, tokens: list[str]) -> list[int]:
        buckets = self.config.num_buckets - 1
        return [zlib.crc32(token.encode("utf-8", "surrogatepass")) % buckets + 1 for token in tokens]

    def tokens(self, item: ModelInput) -> list[str]:
        """Tokens in priority order (words, then bigrams, then character n-grams), truncated.

        Every item starts with a document token, so no row is all padding (an empty input would
        otherwise make the masked mean divide by zero).
        """
        tokens = [DOCUMENT_TOKEN, *(token for _, run in self._runs(item) for token in run)]
        if self.config.version >= 2:
            tokens = list(dict.fromkeys(tokens))
        return tokens[: self.config.max_tokens]

    def attributed_token_ids(self, item: ModelInput) -> tuple[list[int], list[frozenset[Piece]]]:
        """`token_ids(item)`, and for each id the pieces whose removal from the input removes that token.

        A token made by several pieces (the n-gram "#<th" of "the" and of "this") stays while any of them is
        there, so only the pieces common to all its occurrences remove it; a word pair needs both its words.
        The document and field-presence tokens belong to no piece. Same tokens, same order as `tokens`.
        """
        removed_by: dict[str, frozenset[Piece]] = {DOCUMENT_TOKEN: frozenset()}
        for pieces, run in self._runs(item):
            needed = frozenset(pieces)
            for token in run:
                removed_by[token] = removed_by[token] & needed if token in removed_by else needed
        tokens = self.tokens(item)
        return self._hashed(tokens), [removed_by[token] for token in tokens]

    def _runs(self, item: ModelInput) -> list[Run]:
        if isinstance(item, str):
            words, bigrams, grams = self._text_runs(item, field=None)
        else:
            words, bigrams, grams = self._record_runs(item)
        return [*words, *bigrams, *grams]

    def _record_runs(self, record: RecordInput) -> tuple[list[Run], list[Run], list[Run]]:
        words: list[Run] = []
        bigrams: list[Run] = []
        grams: list[Run] = []
        for name in sorted(record):
            field = str(name).casefold()
            value = record[name]
            if value is None or value == "":
                words.append((((field, "<none>"),), [f"{field}=<none>"]))
            elif isinstance(value, bool):
                words.append((((field, str(value)),), [f"{field}={value}"]))
            elif isinstance(value, int | float):
                words.append((((field, str(value)),), [_number_token(field, value)]))
            elif isinstance(value, str) and (date_tokens := _date_tokens(field, value)):
                words.append((((field, value.strip()),), date_tokens))
            else:
                text = value if isinstance(value, str) else str(value)
                field_words, field_bigrams, field_grams = self._text_runs(text, field=field)
                words.append(((), [f"{field}=<present>"]))
                words.extend(field_words)
                bigrams.extend(field_bigrams)
                grams.extend(field_grams)
        return words, bigrams, grams

    def _text_runs(self, text: str, field: str | None) -> tuple[list[Run], list[Run], list[Run]]:
        """The tokens of a text (or of a record field's text, prefixed with the field), grouped by the pieces
        that make them: a word, a URL, a shape of the whole text."""
        prefix = "" if field is None else f"{field}:"
        raw = text[: self.config.max_chars]
        text = normalize_text(raw)
        words: list[Run] = []
        for url in _URL.findall(text):
            domain = _SCHEME.sub("", url).split("/")[0].removeprefix("www.")
            words.append((((field, url),), [prefix + "<url>", prefix + "url:" + domain]))
        if self.config.version < 3:
            text = _URL.sub(" ", text)
        raw_words = _WORD.findall(text)
        for word in raw_words:
            number = [f"{prefix}<num{len(word)}>"] if word.isdigit() else []
            words.append((((field, word),), [prefix + word, *number]))
        bigrams: list[Run] = [
            (((field, first), (field, second)), [f"{prefix}{first} {second}"])
            for first, second in itertools.pairwise(raw_words)
        ]
        shortest = 1 if self.config.version >= 2 else 3
        grams: list[Run] = [(((field, word),), self._char_ngrams(word)) for word in raw_words if len(word) >= shortest]
        if self.config.version >= 2 and text:
            words.extend((((field, shape),), [prefix + shape]) for shape in _shape_tokens(raw, text))
        return words, bigrams, grams

    def _char_ngrams(self, word: str) -> list[str]:
        padded = f"<{_DIGITS.sub(lambda digits: '0' * len(digits.group()), word)}>"
        return [
            "#" + padded[start : start + size]
            for size in range(self.config.char_ngram_min, self.config.char_ngram_max + 1)
            for start in range(len(padded) - size + 1)
        ]


def _shape_tokens(raw: str, normalized: str) -> list[str]:
    """Coarse facts about a text's look that hold across campaigns: numbers, money, shouting, length."""
    letters = [char for char in raw if char.isalpha()]
    capitals = sum(char.isupper() for char in letters) / len(letters) if letters else 0.0
    digits = sum(char.isdigit() for char in raw)
    shapes = [f"<caps{min(int(capitals * 4), 3)}>", f"<digits{min(digits // 4, 4)}>", f"<len{min(len(raw) // 40, 5)}>"]
    if _PHONE.search(normalized):
        shapes.append("<phone>")
    if _MONEY.search(normalized):
        shapes.append("<money>")
    if "!" in raw:
        shapes.append("<bang>")
    return shapes


def _number_token(field: str, value: float) -> str:
    """Numbers generalize by magnitude (digit count); NaN and infinities get their own token."""
    if not math.isfinite(value):
        return f"{field}=<{'nan' if math.isnan(value) else 'inf'}>"
    return f"{field}=<num{len(str(int(abs(value))))}>"


def _date_tokens(field: str, value: str) -> list[str]:
    """ISO dates become coarse calendar tokens, so a date generalizes instead of being one rare word."""
    candidate = value.strip()
    if not _ISO_DATE.match(candidate):
        return []
    try:
        moment = datetime.fromisoformat(candidate.replace("Z", "+00:00"))
    except ValueError:
        return []
    return [
        f"{field}:year={moment.year}",
        f"{field}:month={moment.month}",
        f"{field}:weekday={moment.weekday()}",
    ]
