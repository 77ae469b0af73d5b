"""Read template.yaml and wire the functions exactly as it declares them, for local runs and tests.

Resources, environment variables, handler strings, API routes and SQS settings all come from the
template, so the local stack and the tests cannot drift from what `sam deploy` creates.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
LOCAL_PREFIX = "lodbrok-local"
REGION = "us-east-1"
ACCOUNT = "123456789012"
# Parameter overrides for a learning loop that answers in seconds: verdicts are batched for 2 s (not 60) and a warm
# predict function looks for a new model every 2 s (not 60). `python -m devstack --fast`, the demo and the tests.
FAST_LOOP = ("RetrainBatchingWindowSeconds=2", "ModelRefreshSeconds=2")
# The local stack's own defaults, which --fast and --parameter-overrides may change: the console's rollback works
# locally (ApiRollback, off by default in template.yaml, lets the predict role sign models).
LOCAL_DEFAULTS = ("ApiRollback=true",)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """A SAM template as plain JSON values: short-form intrinsics (!Ref) become their long form ({"Ref": ...})."""
    return json.loads(_template_json(Path(path), Path(path).stat().st_mtime_ns))


@functools.cache
def _template_json(path: Path, modified_ns: int) -> str:
    """Parsed once per file version (the YAML parse is slow, and the tests build a Template per resource).

    Round-tripped through JSON because the loader returns str and dict subclasses that carry line numbers; each
    caller gets its own copy to change.
    """
    return json.dumps(cfn_yaml.load(str(path)))


@dataclass(frozen=True)
class Route:
    path: str
    method: str
    api_key_required: bool


@dataclass(frozen=True)
class GatewayAnswer:
    """One of API Gateway's own responses (a Gateway Response): its status and JSON body."""

    status: int
    body: str


@dataclass(frozen=True)
class QueueTrigger:
    queue_logical_id: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool


class Template:
    """A parsed SAM template with intrinsic functions resolved against local physical names."""

    def __init__(self, path: Path = TEMPLATE_PATH, parameter_overrides: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.document = load_template(path)
        self.resources: dict[str, Any] = self.document.get("Resources", {})
        declared = self.document.get("Parameters", {})
        self.parameters = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        self.list_parameters = {name for name, spec in declared.items() if spec.get("Type") == "CommaDelimitedList"}
        # Ids only known once a resource exists (a KMS key's ARN), registered by create_resources.
        self.physical_ids: dict[str, str] = {}
        unknown = set(parameter_overrides or {}) - set(self.parameters)
        if unknown:
            raise ValueError(f"unknown template parameters: {sorted(unknown)}")
        self.parameters.update(parameter_overrides or {})

    def physical_name(self, logical_id: str) -> str:
        return f"{LOCAL_PREFIX}-{logical_id.lower()}"

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: spec for name, spec in self.resources.items() if spec.get("Type") == resource_type}

    def properties(self, logical_id: str) -> dict[str, Any]:
        resource = self.resources[logical_id]
        merged = dict(self.document.get("Globals", {}).get("Function", {})) if _is_function(resource) else {}
        for key, value in resource.get("Properties", {}).items():
            if key == "Environment" and "Environment" in merged:
                variables = {**merged["Environment"].get("Variables", {}), **value.get("Variables", {})}
                merged[key] = {"Variables": variables}
            else:
                merged[key] = value
        return merged

    def environment(self, function_logical_id: str) -> dict[str, str]:
        variables = self.properties(function_logical_id).get("Environment", {}).get("Variables", {})
        return {name: str(self.resolve(value)) for name, value in variables.items()}

    def handler(self, function_logical_id: str) -> Callable[..., Any]:
        """Import the function's handler from its CodeUri + Handler, as the Lambda runtime would."""
        properties = self.properties(function_logical_id)
        if properties.get("PackageType") == "Image":
            metadata = self.resources[function_logical_id].get("Metadata", {})
            dockerfile = ROOT / metadata["DockerContext"] / metadata["Dockerfile"]
            module_file, function_name = _image_handler(dockerfile)
        else:
            module_path, function_name = properties["Handler"].rsplit(".", 1)
            module_file = ROOT / properties["CodeUri"] / (module_path.replace(".", "/") + ".py")
        module = load_handler_module(f"lodbrok_function_{function_logical_id}", module_file)
        return getattr(module, function_name)

    def routes(self, function_logical_id: str) -> list[Route]:
        api_auth = self._api_auth_default()
        routes = []
        for event in self.properties(function_logical_id).get("Events", {}).values():
            if event.get("Type") != "Api":
                continue
            spec = event["Properties"]
            required = spec.get("Auth", {}).get("ApiKeyRequired", api_auth)
            routes.append(Route(spec["Path"], spec["Method"].upper(), bool(self.resolve(required))))
        return routes

    def gateway_responses(self) -> dict[str, GatewayAnswer]:
        """The REST API's Gateway Responses by response type (INVALID_API_KEY, ...), with their JSON bodies."""
        answers = {}
        for spec in self.resources_of_type("AWS::Serverless::Api").values():
            for response_type, response in spec.get("Properties", {}).get("GatewayResponses", {}).items():
                body = self.resolve(response.get("ResponseTemplates", {}).get("application/json", ""))
                answers[response_type] = GatewayAnswer(int(self.resolve(response["StatusCode"])), str(body))
        return answers

    def timeout_seconds(self, function_logical_id: str) -> int:
        return int(self.resolve(self.properties(function_logical_id).get("Timeout", 3)))

    def queue_trigger(self, function_logical_id: str) -> QueueTrigger:
        for event in self.properties(function_logical_id).get("Events", {}).values():
            if event.get("Type") == "SQS":
                spec = event["Properties"]
                return QueueTrigger(
                    queue_logical_id=_referenced_logical_id(spec["Queue"]),
                    batch_size=int(self.resolve(spec.get("BatchSize", 10))),
                    batching_window_seconds=int(self.resolve(spec.get("MaximumBatchingWindowInSeconds", 0))),
                    report_batch_item_failures="ReportBatchItemFailures" in spec.get("FunctionResponseTypes", []),
                )
        raise ValueError(f"{function_logical_id} has no SQS event in {self.path.name}")

    def resolve(self, value: Any) -> Any:
        """Resolve the intrinsic functions this project's template uses."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.attribute(logical_id, attribute)
        if function == "Fn::Sub":
            return self._sub(argument)
        if function == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.resolve(items))
        if function == "Fn::FindInMap":
            map_name, top_key, second_key = (str(self.resolve(part)) for part in argument)
            return self.document["Mappings"][map_name][top_key][second_key]
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if function.startswith("Fn::"):
            raise ValueError(f"{function} is not supported by the local stack")
        return {function: self.resolve(argument)}

    def condition(self, name: str) -> bool:
        return bool(self._evaluate(self.document.get("Conditions", {})[name]))

    def _evaluate(self, expression: Any) -> Any:
        if isinstance(expression, dict) and len(expression) == 1:
            ((function, argument),) = expression.items()
            if function == "Fn::Equals":
                left, right = (str(self._evaluate(item)) for item in argument)
                return left == right
            if function == "Fn::Not":
                return not self._evaluate(argument[0])
            if function == "Fn::And":
                return all(self._evaluate(item) for item in argument)
            if function == "Fn::Or":
                return any(self._evaluate(item) for item in argument)
            if function == "Condition":
                return self.condition(argument)
        return self.resolve(expression)

    def _ref(self, name: str) -> Any:
        if name in self.list_parameters:
            return [item for item in self.parameters[name].split(",") if item]
        if name in self.parameters:
            return self.parameters[name]
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": LOCAL_PREFIX,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        }
        if name in pseudo:
            return pseudo[name]
        if self.resources.get(name, {}).get("Type") == "AWS::SQS::Queue":
            return queue_url(self.physical_name(name))
        return self.physical_name(name)

    def attribute(self, logical_id: str, attribute: str) -> str:
        name = self.physical_name(logical_id)
        resource_type = self.resources.get(logical_id, {}).get("Type", "")
        if attribute == "Arn" and logical_id in self.physical_ids:
            return self.physical_ids[logical_id]
        if attribute == "Arn":
            service = {"AWS::SQS::Queue": "sqs", "AWS::DynamoDB::Table": "dynamodb", "AWS::S3::Bucket": "s3"}
            kind = service.get(resource_type, "lambda")
            if kind == "s3":
                return f"arn:aws:s3:::{name}"
            if kind == "dynamodb":
                return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
            return f"arn:aws:{kind}:{REGION}:{ACCOUNT}:{name}"
        if attribute == "QueueUrl":
            return queue_url(name)
        return name

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        resolved = {key: str(self.resolve(item)) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            reference = match.group(1)
            if reference in resolved:
                return resolved[reference]
            if "." in reference and not reference.startswith("AWS::"):
                return self.attribute(*reference.split(".", 1))
            return str(self._ref(reference))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def _api_auth_default(self) -> bool:
        for spec in self.resources_of_type("AWS::Serverless::Api").values():
            return bool(spec.get("Properties", {}).get("Auth", {}).get("ApiKeyRequired", False))
        return False


def queue_url(queue_name: str) -> str:
    """The URL moto (and SQS) give a queue; fixed so env vars can be resolved before queues exist."""
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{queue_name}"


def _is_function(resource: dict[str, Any]) -> bool:
    return resource.get("Type") == "AWS::Serverless::Function"


def _referenced_logical_id(value: Any) -> str:
    if isinstance(value, dict):
        ((function, argument),) = value.items()
        return (
            argument if function == "Ref" else (argument[0] if isinstance(argument, list) else argument.split(".")[0])
        )
    raise ValueError(f"expected a reference to a queue, got {value!r}")


def _image_handler(dockerfile: Path) -> tuple[Path, str]:
    """An image function's handler: the COPY'd app file and the CMD `module.function`."""
    text = dockerfile.read_text()
    command = re.search(r'CMD\s*\[\s*"([\w.]+)\.(\w+)"\s*\]', text)
    if not command:
        raise ValueError(f'{dockerfile} has no CMD ["module.function"]')
    module_name, function_name = command.groups()
    for source in re.findall(r"^COPY\s+(\S+)\s+", text, flags=re.MULTILINE):
        if source.endswith(f"{module_name}.py"):
            return ROOT / source, function_name
    raise ValueError(f"{dockerfile} does not COPY {module_name}.py")


def load_handler_module(name: str, path: Path) -> ModuleType:
    """Import a function's handler file as module `name`, with its directory on the path as the runtime's
    /var/task is, so the handler's sibling modules import."""
    if name in sys.modules:
        return sys.modules[name]
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
