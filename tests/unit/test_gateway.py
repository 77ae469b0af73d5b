"""The local gateway's Lambda context (devstack.gateway): what a handler run by `make local` sees and logs."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from devstack.gateway import LambdaContext
from lodbrok.observability import logger


@logger.inject_lambda_context
def _retrain_handler(event: dict[str, Any], context: Any) -> None:
    # Another function of the same process starts while this one runs (the API answering a request)
    logger.append_keys(function_name="PredictFunction")
    logger.info("retrain line")


def test_lambda_context_invoke_logs_name_the_invoked_function_while_another_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the structured log captured, and the retrain function invoked as `make local` invokes it
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    try:
        # When the predict function starts in another thread during the invocation
        LambdaContext("RetrainFunction").invoke(_retrain_handler, {})
    finally:
        logger.remove_keys(["function_name", "function_arn", "function_request_id", "function_memory_size"])
    # Then the retrain function's line still names it, and no key of it outlives the invocation
    [line] = [json.loads(raw) for raw in stream.getvalue().splitlines() if "retrain line" in raw]
    assert line["function_name"] == "RetrainFunction"
    assert line["function_arn"].endswith(":function:RetrainFunction")
    assert logger.thread_safe_get_current_keys() == {}
