"""Runtime configuration of both functions, read from the environment once per process.

Domain code receives a `Settings` object; only `get_settings` reads `os.environ`. The names are the
environment variables that template.yaml sets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lodbrok.model.review_band import ReviewBand


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    model_bucket: str = Field("", alias="MODEL_BUCKET")
    model_name: str = Field("default", alias="MODEL_NAME")
    pinned_model_version: str = Field("", alias="MODEL_VERSION")
    model_refresh_seconds: float = Field(60.0, ge=0, alias="MODEL_REFRESH_SECONDS")
    model_signing_key: str = Field("", alias="MODEL_SIGNING_KEY")
    # Keys whose signatures are still accepted after a key rotation (comma-separated KMS key ARNs).
    trusted_signing_keys: str = Field("", alias="MODEL_TRUSTED_SIGNING_KEYS")

    cache_table: str = Field("", alias="CACHE_TABLE")
    cache_ttl_seconds: int = Field(86_400, ge=60, alias="CACHE_TTL_SECONDS")
    verdict_memory_table: str = Field("", alias="VERDICT_MEMORY_TABLE")
    verdict_memory_ttl_seconds: int = Field(90 * 86_400, ge=60, alias="VERDICT_MEMORY_TTL_SECONDS")
    # Entries a day (UTC) may add to the verdict memory: per sender of feedback, and for reviewers together.
    verdict_memory_client_daily_cap: int = Field(200, ge=0, alias="VERDICT_MEMORY_CLIENT_DAILY_CAP")
    verdict_memory_global_daily_cap: int = Field(5_000, ge=0, alias="VERDICT_MEMORY_GLOBAL_DAILY_CAP")

    # Client roles (lodbrok.access.roles): the clients table, and how long a warm container keeps a key's role.
    clients_table: str = Field("", alias="CLIENTS_TABLE")
    # The API's usage plan, where `lodbrok clients` adds keys (the functions never read it).
    usage_plan_id: str = Field("", alias="USAGE_PLAN_ID")
    role_cache_seconds: float = Field(60.0, ge=0, alias="ROLE_CACHE_SECONDS")
    # KMS HMAC key that attests the verdicts the API queues (lodbrok.verdicts.attestation).
    verdict_attestation_key: str = Field("", alias="VERDICT_ATTESTATION_KEY")
    # How far in the future an attested verdict's time may be before it is clamped to now.
    max_clock_skew_seconds: float = Field(60.0, ge=0, alias="MAX_CLOCK_SKEW_SECONDS")

    max_items: int = Field(100, ge=1, le=1000, alias="MAX_ITEMS")
    max_text_chars: int = Field(5_000, ge=1, alias="MAX_TEXT_CHARS")
    max_body_bytes: int = Field(1_000_000, ge=1024, alias="MAX_BODY_BYTES")
    # The explain budget: an explained item costs a model row per piece (up to max_tokens), and attributing
    # a long input costs more than featurizing it; sized so the worst explained request costs about what the
    # worst plain one does (`make bench`, predict section).
    explain_max_items: int = Field(10, ge=1, le=1000, alias="EXPLAIN_MAX_ITEMS")
    explain_max_chars: int = Field(20_000, ge=1, alias="EXPLAIN_MAX_CHARS")
    # JSON {label: [low, high]}: probabilities answered with the decision `review` (lodbrok.model.review_band).
    review_band: str = Field("", alias="REVIEW_BAND")

    call_log_enabled: bool = Field(False, alias="CALL_LOG_ENABLED")
    call_log_table: str = Field("", alias="CALL_LOG_TABLE")
    call_log_ttl_seconds: int = Field(7 * 86_400, ge=60, alias="CALL_LOG_TTL_SECONDS")

    verdict_queue_url: str = Field("", alias="VERDICT_QUEUE_URL")
    # Items answered `review` that a request asked people to label (lodbrok.serving.review_queue); empty: none.
    review_queue_table: str = Field("", alias="REVIEW_QUEUE_TABLE")
    review_queue_ttl_seconds: int = Field(14 * 86_400, ge=60, alias="REVIEW_QUEUE_TTL_SECONDS")
    # POST /model/rollback may roll the model back (the stack's ApiRollback): only then may the role sign models.
    api_rollback: bool = Field(False, alias="API_ROLLBACK")
    idempotency_table: str = Field("", alias="IDEMPOTENCY_TABLE")
    verdict_archive_prefix: str = Field("verdicts/", alias="VERDICT_ARCHIVE_PREFIX")
    min_verdicts_to_train: int = Field(1, ge=1, alias="MIN_VERDICTS_TO_TRAIN")
    gate_tolerance: float = Field(0.01, ge=0, le=1, alias="GATE_TOLERANCE")
    idempotency_ttl_seconds: int = Field(30 * 86_400, ge=60, alias="IDEMPOTENCY_TTL_SECONDS")
    archive_settle_seconds: float = Field(300.0, ge=0, alias="ARCHIVE_SETTLE_SECONDS")
    max_verdicts_per_retrain: int = Field(5_000, ge=1, alias="MAX_VERDICTS_PER_RETRAIN")
    retrain_max_attempts: int = Field(3, ge=1, le=10, alias="RETRAIN_MAX_ATTEMPTS")
    finetune_epochs: int = Field(4, ge=1, le=50, alias="FINETUNE_EPOCHS")

    @field_validator("review_band")
    @classmethod
    def _valid_review_band(cls, raw: str) -> str:
        ReviewBand.parse(raw)
        return raw

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        names = {field.alias for field in cls.model_fields.values() if field.alias}
        return cls.model_validate({name: value for name, value in environ.items() if name in names})


@cache
def get_settings() -> Settings:
    return Settings.from_env(os.environ)
