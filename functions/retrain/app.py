"""Retrain function: SQS verdict batches in, archived once, learned when enough; also the daily schedule.

Thin handler: an SQS batch is one `LearningLoop.learn_from_batch` call (each message archived with partial
batch failures, the batch remembered, then a retrain if due); a scheduled EventBridge event retrains from
every verdict archived since the last promotion. TensorFlow is imported only inside fine-tuning.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lodbrok.learning.loop import LearningLoop, build_learning_loop, is_scheduled_event
from lodbrok.learning.state import Mode
from lodbrok.observability import logger, metrics, tracer
from lodbrok.settings import get_settings


@cache
def get_learning_loop() -> LearningLoop:
    """Created on the first invocation and reused while the container is warm (clients, loaded model)."""
    return build_learning_loop(get_settings())


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    loop = get_learning_loop()
    if is_scheduled_event(event):
        return loop.retrain(Mode.SINCE_PROMOTION).model_dump(mode="json")
    return dict(loop.learn_from_batch(event, context))
