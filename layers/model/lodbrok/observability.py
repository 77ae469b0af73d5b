"""One Logger, Metrics and Tracer for the package; handlers decorate with these same objects.

Powertools shares state between instances of the same service/namespace, so domain modules add
metrics here and the handler's `log_metrics` flushes them as CloudWatch EMF at the end of the call.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "lodbrok"
METRICS_NAMESPACE = "Lodbrok"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
