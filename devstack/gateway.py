"""Local API Gateway: HTTP requests -> the REST proxy events the template routes to a function.

Before the function runs it refuses what API Gateway refuses, with API Gateway's answers: a route or method the
template does not declare is 403 MISSING_AUTHENTICATION_TOKEN (never a 404), a keyed route without a valid
x-api-key is 403 INVALID_API_KEY, a body over the REST payload limit is 413. Their bodies are the template's
Gateway Responses where it declares them, else API Gateway's defaults.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.template import GatewayAnswer, Route, Template

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway REST payload limit
STAGE = "local"
# What API Gateway answers when the template customises none of these response types.
DEFAULT_RESPONSES = {
    "MISSING_AUTHENTICATION_TOKEN": GatewayAnswer(403, '{"message": "Missing Authentication Token"}'),
    "INVALID_API_KEY": GatewayAnswer(403, '{"message": "Forbidden"}'),
    "REQUEST_TOO_LARGE": GatewayAnswer(413, '{"message": "Request Too Long"}'),
}


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 1024
    timeout_seconds: int = 30
    aws_request_id: str = ""
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def invoke(self, handler: Callable[[dict[str, Any], Any], Any], event: dict[str, Any]) -> Any:
        """Call `handler` as this function, its log lines naming it. Powertools keeps the Lambda context in keys
        the process shares, and here one process runs every function at once (the API's threads, the queue's
        poller): without a copy of its own in this thread, a line would name whichever function started last."""
        from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model

        from lodbrok.observability import logger

        keys = build_lambda_context_model(self).__dict__
        logger.thread_safe_append_keys(**keys)
        try:
            return handler(event, self)
        finally:
            logger.thread_safe_remove_keys(keys)


def proxy_event(
    route: Route,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    source_ip: str,
    api_key: str | None,
    api_key_id: str | None,
) -> dict[str, Any]:
    """The API Gateway REST (v1) Lambda proxy event for one request."""
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    try:
        text_body, encoded = (body.decode("utf-8"), False) if body else (None, False)
    except UnicodeDecodeError:
        text_body, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": route.path,
        "path": url.path,
        "httpMethod": method,
        "headers": headers or None,
        "multiValueHeaders": {name: [value] for name, value in headers.items()} or None,
        "queryStringParameters": {name: values[-1] for name, values in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.path,
            "httpMethod": method,
            # The path as called: the local API is served at the root, as through a custom domain, so the
            # Swagger UI's server (Powertools derives it from this path and the stage) is the root too.
            "path": url.path,
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": "123456789012",
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "identity": {
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent", ""),
                "apiKey": api_key if api_key else None,
                "apiKeyId": api_key_id if api_key else None,
            },
        },
        "body": text_body,
        "isBase64Encoded": encoded,
    }


class LocalGateway:
    """Serves the function's routes on host:port, checking the API key as the deployed API does."""

    def __init__(
        self,
        function_name: str,
        handler: Callable[[dict[str, Any], Any], dict[str, Any]],
        routes: list[Route],
        authorize: Callable[[str | None], str | None],
        responses: Mapping[str, GatewayAnswer] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        """`authorize` maps an x-api-key value to its key id, or None for a key API Gateway would refuse;
        `responses` are the template's Gateway Responses by type."""
        self.function_name = function_name
        self.handler = handler
        self.routes = {(route.path, route.method): route for route in routes}
        self.authorize = authorize
        self.responses = {**DEFAULT_RESPONSES, **(responses or {})}
        self.log = log
        # One warm "container": Powertools' resolver keeps per-request state on the app object.
        self._invoke_lock = threading.Lock()

    @classmethod
    def from_template(
        cls, template: Template, function_logical_id: str, authorize: Callable[[str | None], str | None]
    ) -> LocalGateway:
        """The function's routes, handler and the API's Gateway Responses, as template.yaml declares them."""
        return cls(
            function_logical_id,
            template.handler(function_logical_id),
            template.routes(function_logical_id),
            authorize,
            responses=template.gateway_responses(),
        )

    def invoke(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        started = time.perf_counter()
        status, response_headers, payload = self._dispatch(method, target, headers, body, source_ip)
        self.log(
            f"{self.function_name} {method} {target} -> {status} ({(time.perf_counter() - started) * 1000:.1f} ms)"
        )
        return status, response_headers, payload

    def _dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(target).path
        route = self.routes.get((path, method))
        if route is None:
            return self._answer("MISSING_AUTHENTICATION_TOKEN")
        given_key = next((value for name, value in headers.items() if name.lower() == "x-api-key"), None)
        key_id = self.authorize(given_key)
        if route.api_key_required and key_id is None:
            return self._answer("INVALID_API_KEY")
        if len(body) > MAX_PAYLOAD_BYTES:
            return self._answer("REQUEST_TOO_LARGE")
        event = proxy_event(route, method, target, headers, body, source_ip, given_key if key_id else None, key_id)
        with self._invoke_lock:
            try:
                response = LambdaContext(self.function_name).invoke(self.handler, event)
            except Exception as error:  # a crashed function is a 502 from API Gateway
                self.log(f"{self.function_name} raised {type(error).__name__}: {error}")
                return _gateway_error(502, "Internal server error")
        response_headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            response_headers[name] = ", ".join(values)
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
        return int(response.get("statusCode", 200)), response_headers, data

    def _answer(self, response_type: str) -> tuple[int, dict[str, str], bytes]:
        answer = self.responses[response_type]
        return answer.status, {"Content-Type": "application/json"}, answer.body.encode()

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        gateway = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name: value for name, value in self.headers.items()}
                status, response_headers, payload = gateway.invoke(
                    self.command, self.path, headers, body, self.client_address[0]
                )
                self.send_response(status)
                for name, value in response_headers.items():
                    if name.lower() not in {"content-length", "connection"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def __getattr__(self, name: str) -> Any:
                # Every method reaches the gateway, as with API Gateway (which answers an undeclared one
                # with its JSON 403), instead of http.server's HTML 501.
                if name.startswith("do_"):
                    return self._handle
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:  # the gateway logs each call
                return

        server = ThreadingHTTPServer((host, port), RequestHandler)
        server.daemon_threads = True
        return server


def _gateway_error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps({"message": message}).encode()
