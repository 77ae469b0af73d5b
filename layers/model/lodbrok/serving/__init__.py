"""The predict function's domain: one service method per endpoint and what it relies on (active model,
caches, call log, request and response schemas, drift signals, the verdict queue). Free of TensorFlow.
"""
