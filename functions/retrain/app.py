"""Retrain function: SQS verdict batches in, archived once, learned when enough; also the daily schedule.

Thin handler: each SQS record is one `LearningLoop.accept` call (partial batch failures, so one bad
message never blocks the others), then `remember_batch` (the verdict memory answers the corrected inputs
at once) and one `retrain_if_due`. A scheduled EventBridge event retrains from
every verdict archived since the last promotion. TensorFlow is imported only inside fine-tuning.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from lodbrok.learning.loop import LearningLoop, build_learning_loop, is_scheduled_event
from lodbrok.learning.state import Mode
from lodbrok.observability import logger, metrics, tracer
from lodbrok.settings import get_settings

processor = BatchProcessor(event_type=EventType.SQS)


@cache
def get_learning_loop() -> LearningLoop:
    """Created on the first invocation and reused while the container is warm (clients, loaded model)."""
    return build_learning_loop(get_settings())


def record_handler(record: SQSRecord) -> dict[str, Any]:
    result = get_learning_loop().accept(
        record.body, message_id=record.message_id, sent_timestamp=record.attributes.sent_timestamp
    )
    return {"archived": result.archived, "duplicates": result.duplicates, "quarantined": bool(result.quarantine_key)}


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    loop = get_learning_loop()
    if is_scheduled_event(event):
        return loop.retrain(Mode.SINCE_PROMOTION).model_dump(mode="json")
    loop.start_batch(context)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    loop.remember_batch()
    loop.retrain_if_due(context)
    return dict(response)
