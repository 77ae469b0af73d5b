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

The row is built lazily in that priority order and stops at `max_tokens`: a record's later fields are only
read, and a word's n-grams only made, while the row has room, and a run of tokens equal to one already
taken (a repeated word, in a text or across fields) is skipped before it is made. So the cost of a long
input is bounded by `max_tokens` tokens made and `max_chars` characters scanned per string, not by how many
n-grams the whole input would have; the features are exactly those of building everything and cutting.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import re
import unicodedata
import zlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from lodbrok.model.items import ModelInput

FEATURIZER_VERSION = 3
SUPPORTED_VERSIONS = (1, 2, 3)
DOCUMENT_TOKEN = "<doc>"

# A piece of an input that an explanation can name: (record field or None for a text, a word, URL, value or
# shape token).
Piece = tuple[str | None, str]
_T = TypeVar("_T")

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
        return self._row(item, attribute=False)[0]

    def attributed_token_ids(self, item: ModelInput) -> tuple[list[int], list[frozenset[Piece]]]:
        """`token_ids(item)`, and for each id the pieces whose removal from the input removes that token.

        A token made by several pieces (the n-gram "#<th" of "the" and of "this") stays while any of them is
        there, so only the pieces common to all its occurrences in the row's making remove it; a word pair
        needs both its words. The document and field-presence tokens belong to no piece. Same tokens, same
        order as `tokens`.
        """
        tokens, removed_by = self._row(item, attribute=True)
        return self._hashed(tokens), [removed_by[token] for token in tokens]

    def _row(self, item: ModelInput, *, attribute: bool) -> tuple[list[str], dict[str, frozenset[Piece]]]:
        """The row's tokens, built run by run until it is full: what lies beyond `max_tokens` is never made.

        With deduplication (version >= 2) a run equal to one already taken adds nothing, so it is skipped
        before its tokens are made: a word repeated in a text or across a record's fields costs its
        n-grams once. Attributing compares pieces too, since the same tokens from another field change
        which pieces remove them.
        """
        limit, dedupe = self.config.max_tokens, self.config.version >= 2
        row, in_row = [DOCUMENT_TOKEN], {DOCUMENT_TOKEN}
        removed_by: dict[str, frozenset[Piece]] = {DOCUMENT_TOKEN: frozenset()}
        taken: set[Hashable] = set()
        for run in self._runs(item):
            if len(row) >= limit:
                break
            if dedupe:
                key = (run.pieces, run.key) if attribute else run.key
                if key in taken:
                    continue
                taken.add(key)
            needed = frozenset(run.pieces)
            for token in run.tokens():
                if attribute:
                    removed_by[token] = removed_by[token] & needed if token in removed_by else needed
                if dedupe and token in in_row:
                    continue
                in_row.add(token)
                row.append(token)
                if len(row) >= limit:
                    break
        return row, removed_by

    def _runs(self, item: ModelInput) -> Iterator[_Run]:
        """Runs in priority order: every text's words, then its word pairs, then its n-grams. Lazy, so a
        record's later fields are only read, and n-grams only made, when the row still has room."""
        texts: list[_Text] = []
        if isinstance(item, str):
            texts.append(self._parse(item, field=None))
            yield from texts[0].word_runs()
        else:
            for name in sorted(item):
                field = str(name).casefold()
                value = item[name]
                if value is None or value == "":
                    yield _Run.of(((field, "<none>"),), [f"{field}=<none>"])
                elif isinstance(value, bool):
                    yield _Run.of(((field, str(value)),), [f"{field}={value}"])
                elif isinstance(value, int | float):
                    yield _Run.of(((field, str(value)),), [_number_token(field, value)])
                elif isinstance(value, str) and (date_tokens := _date_tokens(field, value)):
                    yield _Run.of(((field, value.strip()),), date_tokens)
                else:
                    yield _Run.of((), [f"{field}=<present>"])
                    texts.append(self._parse(value if isinstance(value, str) else str(value), field=field))
                    yield from texts[-1].word_runs()
        for text in texts:
            yield from text.bigram_runs()
        ngrams: dict[str, list[str]] = {}  # a word's n-grams, made once however often the word occurs
        shortest = 1 if self.config.version >= 2 else 3
        for text in texts:
            for word in text.distinct(text.words):
                if len(word) >= shortest:
                    yield _Run(((text.field, word),), ("#", word), functools.partial(self._char_ngrams, word, ngrams))

    def _parse(self, text: str, field: str | None) -> _Text:
        raw = text[: self.config.max_chars]
        normalized = normalize_text(raw)
        urls = _URL.findall(normalized)
        if self.config.version < 3:  # URLs were only `<url>` and domain tokens
            normalized = _URL.sub(" ", normalized)
        return _Text(field, raw, normalized, urls, _WORD.findall(normalized), self.config.version)

    def _char_ngrams(self, word: str, made: dict[str, list[str]]) -> list[str]:
        if word not in made:
            padded = f"<{_DIGITS.sub(lambda digits: '0' * len(digits.group()), word)}>"
            grams = [
                "#" + padded[start : start + size]
                for size in range(self.config.char_ngram_min, self.config.char_ngram_max + 1)
                for start in range(len(padded) - size + 1)
            ]
            # A repeat within a run adds nothing once rows are deduplicated ("ééé…" has a handful of n-grams).
            made[word] = list(dict.fromkeys(grams)) if self.config.version >= 2 else grams
        return made[word]


@dataclass(frozen=True)
class _Run:
    """Tokens that all need the same pieces; equal keys mean equal tokens, which are made only when taken."""

    pieces: tuple[Piece, ...]
    key: Hashable
    tokens: Callable[[], Sequence[str]]

    @classmethod
    def of(cls, pieces: tuple[Piece, ...], tokens: list[str]) -> _Run:
        made = tuple(tokens)
        return cls(pieces, made, lambda: made)


@dataclass(frozen=True)
class _Text:
    """A text, or a record field's text (its tokens prefixed with the field), read once."""

    field: str | None
    raw: str
    normalized: str
    urls: list[str]
    words: list[str]
    version: int

    @property
    def prefix(self) -> str:
        return "" if self.field is None else f"{self.field}:"

    def distinct(self, runs: Iterable[_T]) -> Iterable[_T]:
        """Deduplicated rows take a repeated run's tokens once: skip the repeats before making runs of them."""
        return dict.fromkeys(runs) if self.version >= 2 else runs

    def word_runs(self) -> Iterator[_Run]:
        """Its URLs, words and shapes, grouped by the piece that makes them."""
        field, prefix = self.field, self.prefix
        for url in self.urls:
            domain = _SCHEME.sub("", url).split("/")[0].removeprefix("www.")
            yield _Run.of(((field, url),), [prefix + "<url>", prefix + "url:" + domain])
        for word in self.distinct(self.words):
            number = [f"{prefix}<num{len(word)}>"] if word.isdigit() else []
            yield _Run.of(((field, word),), [prefix + word, *number])
        if self.version >= 2 and self.normalized:
            for shape in _shape_tokens(self.raw, self.normalized):
                yield _Run.of(((field, shape),), [prefix + shape])

    def bigram_runs(self) -> Iterator[_Run]:
        for first, second in self.distinct(itertools.pairwise(self.words)):
            yield _Run.of(((self.field, first), (self.field, second)), [f"{self.prefix}{first} {second}"])


def _shape_tokens(raw: str, normalized: str) -> list[str]:
    """Coarse facts about a text's look that hold across campaigns: numbers, money, shouting, length."""
    letters = sum(map(str.isalpha, raw))  # map and filter keep the per-character loop in C
    capitals = sum(map(str.isupper, filter(str.isalpha, raw))) / letters if letters else 0.0
    digits = sum(map(str.isdigit, raw))
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
