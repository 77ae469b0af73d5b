"""template.yaml and samconfig.toml against the code they deploy: the wiring the functions rely on.

The template is read with cfn-lint's own YAML loader (it understands !Ref, !Sub, !GetAtt ...), so these
tests see exactly what `sam validate --lint` sees, and the last test runs that linter.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devstack.template import Template, load_template
from lodbrok import observability
from lodbrok.registry.store import EXPIRABLE_TAG
from lodbrok.serving import call_log, prediction_cache
from lodbrok.settings import Settings
from lodbrok.verdicts import memory
from support import API_ROLLBACK_ACTIONS, CODE_ACTIONS, PLATFORM_ACTIONS

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"

# Variables the template sets for the tools rather than for lodbrok.settings.Settings.
TOOLING_VARIABLES = {"LOG_LEVEL"}
TOOLING_PREFIXES = ("POWERTOOLS_",)

# The reviewer's console: its routes need a key (and a role the function checks); its page and assets need none.
CONSOLE_REVIEW_ROUTES = {
    ("/review/items", "GET"),
    ("/review/label", "POST"),
    ("/review/skip", "POST"),
    ("/review/held", "POST"),
    ("/model/versions", "GET"),
    ("/model/rollback", "POST"),
}
CONSOLE_PAGES = {("/console", "GET"), ("/console/console.js", "GET"), ("/console/console.css", "GET")}
PREDICT_ROUTES = {
    ("/predict", "POST"),
    ("/predict", "GET"),
    ("/model", "GET"),
    ("/openapi.json", "GET"),
    ("/swagger", "GET"),
    ("/verdicts", "POST"),
    ("/calls/recent", "GET"),
    *CONSOLE_REVIEW_ROUTES,
    *CONSOLE_PAGES,
}
# A browser opens these without a key; "Try it out" and the console ask for one.
PUBLIC_ROUTES = {("/openapi.json", "GET"), ("/swagger", "GET"), *CONSOLE_PAGES}
PREDICT_VARIABLES = {
    "MODEL_BUCKET",
    "MODEL_NAME",
    "MODEL_REFRESH_SECONDS",
    "MODEL_VERSION",
    "MODEL_SIGNING_KEY",
    "MODEL_TRUSTED_SIGNING_KEYS",
    "CACHE_TABLE",
    "VERDICT_MEMORY_TABLE",
    "CACHE_TTL_SECONDS",
    "MAX_ITEMS",
    "MAX_TEXT_CHARS",
    "EXPLAIN_MAX_ITEMS",
    "EXPLAIN_MAX_CHARS",
    "CALL_LOG_ENABLED",
    "CALL_LOG_TABLE",
    "VERDICT_QUEUE_URL",
}
RETRAIN_VARIABLES = {
    "MODEL_BUCKET",
    "MODEL_NAME",
    "MODEL_SIGNING_KEY",
    "MODEL_TRUSTED_SIGNING_KEYS",
    "IDEMPOTENCY_TABLE",
    "VERDICT_MEMORY_TABLE",
    "MIN_VERDICTS_TO_TRAIN",
    "GATE_TOLERANCE",
    "VERDICT_ARCHIVE_PREFIX",
}
BUSINESS_METRICS = {
    "PredictionsServed",
    "CacheHits",
    "CacheMisses",
    "VerdictsAccepted",
    "CandidatePromoted",
    "CandidateRejected",
    "VerdictsHeld",
    "ReviewBandItems",
    "InputTokens",
    "UnseenInputTokens",
    "ReviewQueueDepth",
    "ReviewsDone",
    "ReviewItemsQueued",
}
REQUIRED_OUTPUTS = {
    "ApiUrl",
    "ApiKeyId",
    "ModelBucketName",  # `lodbrok ... --stack NAME` reads these three outputs
    "ModelSigningKeyArn",
    "UsagePlanId",
    "CacheTableName",
    "CallLogTableName",
    "IdempotencyTableName",
    "VerdictQueueUrl",
    "VerdictDLQUrl",
    "DashboardName",
}
LAMBDA_MAX_TIMEOUT = 900


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="module")
def samconfig() -> dict[str, Any]:
    return tomllib.loads(SAMCONFIG.read_text())


def properties(resources: dict[str, Any], name: str) -> dict[str, Any]:
    return resources[name]["Properties"]


def functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in resources.items() if body["Type"] == "AWS::Serverless::Function"}


def environment(template: dict[str, Any], function: str) -> dict[str, Any]:
    """The function's variables merged over Globals, as SAM merges them."""
    global_variables = template["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    own = properties(template["Resources"], function).get("Environment", {}).get("Variables", {})
    return {**global_variables, **own}


def defines_function(module: Path, name: str) -> bool:
    tree = ast.parse(module.read_text(), filename=str(module))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def settings_aliases() -> set[str]:
    return {field.alias for field in Settings.model_fields.values() if field.alias}


def resolve(value: Any, template: dict[str, Any], overrides: dict[str, str]) -> str:
    """An environment value as the function would see it: parameters resolved, resources as placeholders."""
    if isinstance(value, str | int | float | bool):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if "Ref" in value:
        name = value["Ref"]
        if name in template["Parameters"]:
            return overrides.get(name, str(template["Parameters"][name].get("Default", "")))
        return f"{name}-physical-id"
    return "resolved-at-deploy-time"


def parameter_overrides(samconfig: dict[str, Any], env: str) -> dict[str, str]:
    entries = samconfig[env]["deploy"]["parameters"].get("parameter_overrides", [])
    if isinstance(entries, str):
        entries = entries.split()
    return dict(entry.split("=", 1) for entry in entries)


def check_parameter_value(name: str, value: str, declaration: dict[str, Any]) -> list[str]:
    problems = []
    allowed = [str(choice) for choice in declaration.get("AllowedValues", [])]
    if allowed and value not in allowed:
        problems.append(f"{name}={value} is not one of {allowed}")
    if declaration["Type"] == "Number":
        number = float(value)
        if "MinValue" in declaration and number < float(declaration["MinValue"]):
            problems.append(f"{name}={value} < MinValue {declaration['MinValue']}")
        if "MaxValue" in declaration and number > float(declaration["MaxValue"]):
            problems.append(f"{name}={value} > MaxValue {declaration['MaxValue']}")
    if "AllowedPattern" in declaration and not re.fullmatch(declaration["AllowedPattern"], value):
        problems.append(f"{name}={value} does not match {declaration['AllowedPattern']}")
    return problems


# --- functions, handlers, build --------------------------------------------------------------------------


def test_template_predict_handler_names_lambda_handler_in_app_py(resources: dict[str, Any]) -> None:
    # Given the predict function's code location and handler
    predict = properties(resources, "PredictFunction")
    module_name, function_name = predict["Handler"].rsplit(".", 1)
    module = ROOT / predict["CodeUri"] / f"{module_name.replace('.', '/')}.py"

    # Then the handler is app.lambda_handler, and that module defines it
    assert predict["Handler"] == "app.lambda_handler"
    if not module.exists():
        pytest.skip(f"{module.relative_to(ROOT)} is not written yet, so there is no handler to check")
    assert defines_function(module, function_name), f"{module.relative_to(ROOT)} defines no {function_name}"


def test_template_zip_parts_are_makefile_builds_with_matching_targets(resources: dict[str, Any]) -> None:
    # Given every resource that sam builds with BuildMethod: makefile
    makefile_builds = {
        name: body for name, body in resources.items() if body.get("Metadata", {}).get("BuildMethod") == "makefile"
    }

    # Then those are the layer and the predict function, each with a build-<LogicalId> target
    assert set(makefile_builds) == {"ModelLayer", "PredictFunction"}
    for name, body in makefile_builds.items():
        code_dir = ROOT / (body["Properties"].get("CodeUri") or body["Properties"]["ContentUri"])
        makefile = (code_dir / "Makefile").read_text()
        assert re.search(rf"^build-{name}:", makefile, re.MULTILINE), f"{code_dir}/Makefile has no build-{name}"


def test_template_predict_function_runs_with_the_model_layer_built_for_its_runtime(resources: dict[str, Any]) -> None:
    # Given the predict function and the layer
    predict = properties(resources, "PredictFunction")
    layer = properties(resources, "ModelLayer")

    # Then the layer is attached, built for the function's runtime (test_build.py runs it under that Python),
    # and lives where the Makefile builds it
    assert predict["Layers"] == [{"Ref": "ModelLayer"}]
    assert resources["ModelLayer"]["Type"] == "AWS::Serverless::LayerVersion"
    assert predict["Runtime"] in layer["CompatibleRuntimes"]
    assert layer["ContentUri"].rstrip("/") == "layers/model"
    assert (ROOT / "layers/model/lodbrok/__init__.py").is_file()


def test_template_globals_leave_runtime_handler_and_layers_to_each_function(template: dict[str, Any]) -> None:
    # Given the function globals
    global_function = template["Globals"]["Function"]

    # Then nothing in them would leak into the image function (cfn-lint E3685)
    assert not {"Runtime", "Handler", "Layers", "CodeUri", "PackageType"} & set(global_function)


def test_template_retrain_is_an_image_function_without_zip_settings(resources: dict[str, Any]) -> None:
    # Given the retrain function
    retrain = resources["RetrainFunction"]

    # Then it is built from the repository-root context by functions/retrain/Dockerfile
    assert retrain["Properties"]["PackageType"] == "Image"
    assert not {"Layers", "Runtime", "Handler", "CodeUri"} & set(retrain["Properties"])
    assert retrain["Metadata"]["Dockerfile"] == "functions/retrain/Dockerfile"
    assert retrain["Metadata"]["DockerContext"] == "."
    scaling = retrain["Properties"]["Events"]
    pollers = next(
        e["Properties"]["ScalingConfig"]["MaximumConcurrency"] for e in scaling.values() if e["Type"] == "SQS"
    )
    assert retrain["Properties"]["ReservedConcurrentExecutions"] == pollers


def test_template_retrain_image_command_runs_the_retrain_handler() -> None:
    # Given the retrain image's handler, resolved from its Dockerfile's COPY and CMD as `make local` runs it
    handler = Template().handler("RetrainFunction")

    # Then it is the retrain function's handler
    assert Path(inspect.getsourcefile(inspect.unwrap(handler)) or "") == ROOT / "functions/retrain/app.py"
    assert handler.__name__ == "lambda_handler"


# --- environment and settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("function", ["PredictFunction", "RetrainFunction"])
def test_template_environment_variables_are_settings_aliases(template: dict[str, Any], function: str) -> None:
    # Given the variables the function gets
    variables = environment(template, function)
    own = {name for name in variables if name not in TOOLING_VARIABLES and not name.startswith(TOOLING_PREFIXES)}

    # Then each one is read by lodbrok.settings.Settings (a misspelt name would silently be ignored)
    assert own - settings_aliases() == set()


@pytest.mark.parametrize(
    ("function", "expected"), [("PredictFunction", PREDICT_VARIABLES), ("RetrainFunction", RETRAIN_VARIABLES)]
)
def test_template_sets_every_variable_the_function_needs(
    template: dict[str, Any], function: str, expected: set[str]
) -> None:
    # Given the variables the function gets
    variables = environment(template, function)

    # Then it gets every variable its code reads
    assert expected - set(variables) == set()


@pytest.mark.parametrize("env", ["default", "dev", "prod"])
def test_template_environment_validates_as_settings(
    template: dict[str, Any], samconfig: dict[str, Any], env: str
) -> None:
    # Given each function's environment with the parameters of a samconfig environment
    overrides = parameter_overrides(samconfig, env)
    for function in ("PredictFunction", "RetrainFunction"):
        resolved = {
            name: resolve(value, template, overrides) for name, value in environment(template, function).items()
        }

        # When the function reads its settings
        settings = Settings.from_env(resolved)

        # Then they validate, and the values arrive under the intended fields
        assert settings.model_name == resolved["MODEL_NAME"]
        assert settings.model_bucket == "ModelBucket-physical-id"


def test_template_powertools_names_match_observability(template: dict[str, Any], resources: dict[str, Any]) -> None:
    # Given the Powertools variables and the alarm on a business metric
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    alarm = properties(resources, "CandidateRejectedAlarm")

    # Then the service and namespace are the ones lodbrok.observability emits metrics under
    assert variables["POWERTOOLS_SERVICE_NAME"] == observability.SERVICE
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == observability.METRICS_NAMESPACE
    assert alarm["Namespace"] == observability.METRICS_NAMESPACE
    assert alarm["Dimensions"] == [{"Name": "service", "Value": observability.SERVICE}]


# --- API --------------------------------------------------------------------------------------------------


def test_template_api_requires_an_api_key_with_a_usage_plan(resources: dict[str, Any]) -> None:
    # Given the REST API
    auth = properties(resources, "LodbrokApi")["Auth"]

    # Then every method needs a key, and the key gets throttling and a quota
    assert auth["ApiKeyRequired"] is True
    assert auth["UsagePlan"]["CreateUsagePlan"] == "PER_API"
    assert set(auth["UsagePlan"]["Throttle"]) == {"RateLimit", "BurstLimit"}
    assert "Limit" in auth["UsagePlan"]["Quota"]


def test_template_routes_of_the_local_stack_need_a_key_as_deployed() -> None:
    # Given the routes the local gateway reads from the template
    routes = Template().routes("PredictFunction")
    # Then only the API's description and its Swagger UI are open
    assert {(route.path, route.method) for route in routes if not route.api_key_required} == PUBLIC_ROUTES


def test_template_api_routes_are_exactly_the_predict_routes(resources: dict[str, Any]) -> None:
    # Given the API events of every function
    routes = {}
    for name, body in functions(resources).items():
        for event in body["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                routes[(event["Properties"]["Path"], event["Properties"]["Method"].upper())] = (name, event)

    # Then the predict function serves exactly its routes, on the keyed API, the API's description and the console's
    # static files alone without a key; the one admin route (rollback) is the function's to refuse to other roles
    assert set(routes) == PREDICT_ROUTES
    for route, (function, event) in routes.items():
        assert function == "PredictFunction"
        assert event["Properties"]["RestApiId"] == {"Ref": "LodbrokApi"}
        assert event["Properties"].get("Auth", {}).get("ApiKeyRequired", True) is (route not in PUBLIC_ROUTES)
    admin_like = {path for path, _ in routes if re.search(r"rollback|promote|versions|candidates|publish", path)}
    assert admin_like == {"/model/rollback", "/model/versions"}


# --- verdicts and retraining ------------------------------------------------------------------------------


def test_template_retrain_reads_verdicts_with_partial_batch_failures(resources: dict[str, Any]) -> None:
    # Given the retrain function's SQS event
    events = properties(resources, "RetrainFunction")["Events"]
    sqs = [event["Properties"] for event in events.values() if event["Type"] == "SQS"]

    # Then it reads the verdict queue and reports failed messages one by one
    assert len(sqs) == 1
    assert sqs[0]["Queue"] == {"Fn::GetAtt": ["VerdictQueue", "Arn"]}
    assert sqs[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_template_retrain_schedule_is_off_unless_enabled(template: dict[str, Any], resources: dict[str, Any]) -> None:
    # Given the schedule event and its switch
    events = properties(resources, "RetrainFunction")["Events"]
    schedule = next(event["Properties"] for event in events.values() if event["Type"] == "Schedule")

    # Then the rule is enabled only by the RetrainScheduleEnabled parameter, which defaults to off
    assert template["Parameters"]["RetrainScheduleEnabled"]["Default"] == "false"
    assert template["Conditions"]["RetrainScheduleOn"] == {"Fn::Equals": [{"Ref": "RetrainScheduleEnabled"}, "true"]}
    assert schedule["State"] == {"Fn::If": ["RetrainScheduleOn", "ENABLED", "DISABLED"]}


def test_template_queue_visibility_is_at_least_six_retrain_timeouts(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Given the retrain timeout choices and the queue's visibility timeout lookup
    parameters = template["Parameters"]
    timeout = properties(resources, "RetrainFunction")["Timeout"]
    visibility = properties(resources, "VerdictQueue")["VisibilityTimeout"]
    longest_window = int(parameters["RetrainBatchingWindowSeconds"]["MaxValue"])
    assert timeout == {"Ref": "RetrainTimeout"}
    assert visibility == {"Fn::FindInMap": ["RetrainTimeouts", {"Ref": "RetrainTimeout"}, "QueueVisibilityTimeout"]}

    # Then for every allowed timeout the queue hides a batch for 6x the timeout plus the batching window
    choices = parameters["RetrainTimeout"]["AllowedValues"]
    assert parameters["RetrainTimeout"]["Default"] in choices
    for choice in choices:
        assert int(choice) <= LAMBDA_MAX_TIMEOUT
        mapped = int(template["Mappings"]["RetrainTimeouts"][str(choice)]["QueueVisibilityTimeout"])
        assert mapped >= 6 * int(choice) + longest_window, f"RetrainTimeout={choice}"


def test_template_failed_verdicts_go_to_a_dead_letter_queue(resources: dict[str, Any]) -> None:
    # Given the verdict queue and its DLQ
    queue = properties(resources, "VerdictQueue")
    dlq = properties(resources, "VerdictDLQ")

    # Then failed verdicts move to the DLQ, which keeps them longer than the queue would
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["VerdictDLQ", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert dlq["MessageRetentionPeriod"] == 14 * 86_400 > queue["MessageRetentionPeriod"]
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True


# --- storage ----------------------------------------------------------------------------------------------


def test_template_model_bucket_keeps_history_for_rollback(template: dict[str, Any], resources: dict[str, Any]) -> None:
    # Given the model bucket
    bucket = resources["ModelBucket"]
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]

    # Then it is versioned, kept with the stack, and only noncurrent versions beyond a kept number expire
    assert bucket["Properties"]["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["DeletionPolicy"] == "Retain"
    noncurrent = [rule["NoncurrentVersionExpiration"] for rule in rules if "NoncurrentVersionExpiration" in rule]
    assert noncurrent == [
        {
            "NewerNoncurrentVersions": {"Ref": "NoncurrentVersionsToKeep"},
            "NoncurrentDays": {"Ref": "NoncurrentVersionDays"},
        }
    ]
    assert int(template["Parameters"]["NoncurrentVersionsToKeep"]["Default"]) >= 10
    # And only versions the store tags as expirable (never the seed, nor a kept, pinned version)
    [history] = [rule for rule in rules if "NoncurrentVersionExpiration" in rule]
    assert history["TagFilters"] == [{"Key": key, "Value": value} for key, value in [EXPIRABLE_TAG.split("=")]]
    assert not [rule for rule in rules if {"ExpirationInDays", "ExpirationDate"} & set(rule)], "current models expire"
    assert any("AbortIncompleteMultipartUpload" in rule for rule in rules)


def test_template_model_bucket_is_private_and_tls_only(resources: dict[str, Any]) -> None:
    # Given the bucket and its policy
    bucket = properties(resources, "ModelBucket")
    statements = properties(resources, "ModelBucketPolicy")["PolicyDocument"]["Statement"]

    # Then public access is blocked, objects are encrypted, and plain-HTTP requests are denied
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


@pytest.mark.parametrize(
    ("table", "definition", "ttl_attribute"),
    [
        ("CacheTable", prediction_cache.table_definition("t"), prediction_cache.TTL_ATTRIBUTE),
        ("VerdictMemoryTable", prediction_cache.table_definition("t"), memory.TTL_ATTRIBUTE),
        ("CallLogTable", call_log.table_definition("t"), call_log.TTL_ATTRIBUTE),
    ],
)
def test_template_tables_match_the_code(
    resources: dict[str, Any], table: str, definition: dict[str, Any], ttl_attribute: str
) -> None:
    # Given a table the predict code reads and writes
    declared = properties(resources, table)

    # Then the template declares the same keys and TTL attribute as the code's table definition
    assert declared["KeySchema"] == definition["KeySchema"]
    assert sorted(declared["AttributeDefinitions"], key=str) == sorted(definition["AttributeDefinitions"], key=str)
    assert declared["BillingMode"] == "PAY_PER_REQUEST"
    assert declared["TimeToLiveSpecification"] == {"AttributeName": ttl_attribute, "Enabled": True}


def test_template_idempotency_table_matches_powertools_defaults(resources: dict[str, Any]) -> None:
    # Given the idempotency table and the Powertools persistence layer's default attribute names
    declared = properties(resources, "IdempotencyTable")
    defaults = inspect.signature(DynamoDBPersistenceLayer.__init__).parameters

    # Then the key and TTL attributes are those defaults
    assert declared["KeySchema"] == [{"AttributeName": defaults["key_attr"].default, "KeyType": "HASH"}]
    assert declared["TimeToLiveSpecification"] == {"AttributeName": defaults["expiry_attr"].default, "Enabled": True}


# --- permissions ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    """The template after the SAM transform, as CloudFormation receives it (code locations filled in)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    document = json.loads(json.dumps(template))
    for resource in document["Resources"].values():
        declared = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in declared:
                declared[key] = "s3://bucket/code.zip"
        if declared.get("PackageType") == "Image":
            declared["ImageUri"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/lodbrok:retrain"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the transform builds ARNs for a region
        return dict(transform(document, {}, NoManagedPolicies()))


def role_statements(translated: dict[str, Any], role: str, *, api_rollback: bool = False) -> list[dict[str, Any]]:
    """The role's statements as deployed with ApiRollback `api_rollback` (other conditions: as when they hold)."""
    body = translated["Resources"][role]["Properties"]
    assert not body.get("ManagedPolicyArns"), f"{role} attaches managed policies, which grant on every resource"
    conditions = {"ApiRollbackOn": api_rollback}
    statements = []
    for policy in body["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if isinstance(statement, dict) and "Fn::If" in statement:
                condition, when_true, when_false = statement["Fn::If"]
                statement = when_true if conditions.get(condition, True) else when_false
            if statement != {"Ref": "AWS::NoValue"}:
                statements.append(statement)
    return statements


def test_translated_template_gives_functions_only_their_own_roles(translated: dict[str, Any]) -> None:
    # Then the only roles are the two declared ones, and each function uses its own
    roles = {name for name, body in translated["Resources"].items() if body["Type"] == "AWS::IAM::Role"}
    assert roles == set(CODE_ACTIONS)
    for function in ("PredictFunction", "RetrainFunction"):
        role = translated["Resources"][function]["Properties"]["Role"]
        assert role == {"Fn::GetAtt": [f"{function}Role", "Arn"]}
    assert not [
        body
        for body in translated["Resources"].values()
        if body["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
    ]


@pytest.mark.parametrize("api_rollback", [False, True])
@pytest.mark.parametrize("role", sorted(CODE_ACTIONS))
def test_translated_roles_grant_exactly_the_used_actions_on_named_resources(
    translated: dict[str, Any], role: str, api_rollback: bool
) -> None:
    statements = role_statements(translated, role, api_rollback=api_rollback)
    granted = {action for statement in statements for action in statement["Action"]}
    # Then no action is granted that the code or the platform does not use, and none is missing
    rollback = API_ROLLBACK_ACTIONS if api_rollback and role == "PredictFunctionRole" else set()
    assert granted == CODE_ACTIONS[role] | PLATFORM_ACTIONS[role] | rollback
    # And no statement names every resource, except X-Ray's, which has no resource-level permissions
    for statement in statements:
        assert statement["Effect"] == "Allow" and "*" not in str(statement["Action"])
        if statement["Resource"] == "*":
            assert set(statement["Action"]) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, statement


def test_translated_roles_keep_verdicts_from_predict_and_history_from_both(translated: dict[str, Any]) -> None:
    predict = {statement["Sid"]: statement for statement in role_statements(translated, "PredictFunctionRole")}
    retrain = {statement["Sid"]: statement for statement in role_statements(translated, "RetrainFunctionRole")}
    # Then predict reads the models only, never the verdict archive (user texts), and lists no other key names
    assert predict["Models"]["Resource"] == {"Fn::Sub": "${ModelBucket.Arn}/models/*"}
    assert predict["ModelBucket"]["Condition"] == {"StringLike": {"s3:prefix": "models/*"}}
    # And only retrain may sign; predict may only verify
    assert predict["VerifyModels"]["Action"] == ["kms:Verify"] and "kms:Sign" in retrain["SignModels"]["Action"]
    # And retrain polls the verdict queue only
    assert retrain["ReceiveVerdicts"]["Resource"] == {"Fn::GetAtt": ["VerdictQueue", "Arn"]}


def test_translated_predict_role_signs_and_writes_models_only_with_api_rollback(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    # Given the predict role as deployed with ApiRollback off (the default) and on
    off, on = (role_statements(translated, "PredictFunctionRole", api_rollback=value) for value in (False, True))
    models = {"Fn::Sub": "${ModelBucket.Arn}/models/*"}

    def writes_models(statement: dict[str, Any]) -> bool:
        return "s3:PutObject" in statement["Action"] and statement["Resource"] == models

    # Then off, it may not sign anything nor write under models/: what it serves was signed by retrain or an operator
    assert template["Parameters"]["ApiRollback"]["Default"] == "false"
    assert not [statement for statement in off if "kms:Sign" in statement["Action"] or writes_models(statement)]
    # And on, it signs with the model signing key only and writes under models/ only, and its code is told so
    signing = [statement for statement in on if "kms:Sign" in statement["Action"]]
    assert [statement["Sid"] for statement in signing] == ["RollbackSign"]
    assert signing[0]["Resource"] == {
        "Fn::If": ["UseStackSigningKey", {"Fn::GetAtt": ["ModelSigningKey", "Arn"]}, {"Ref": "SigningKeyArn"}]
    }
    assert [statement["Sid"] for statement in on if writes_models(statement)] == ["RollbackWrite"]
    assert template["Conditions"]["ApiRollbackOn"] == {"Fn::Equals": [{"Ref": "ApiRollback"}, "true"]}
    assert environment(template, "PredictFunction")["API_ROLLBACK"] == {"Ref": "ApiRollback"}


def test_translated_roles_let_predict_attest_verdicts_and_retrain_only_verify(
    translated: dict[str, Any], resources: dict[str, Any]
) -> None:
    predict = {statement["Sid"]: statement for statement in role_statements(translated, "PredictFunctionRole")}
    retrain = {statement["Sid"]: statement for statement in role_statements(translated, "RetrainFunctionRole")}
    key = {"Fn::GetAtt": ["VerdictAttestationKey", "Arn"]}
    # Then the attestation key is an HMAC key; predict may only make MACs with it, retrain only verify them
    assert properties(resources, "VerdictAttestationKey")["KeySpec"] == "HMAC_256"
    assert properties(resources, "VerdictAttestationKey")["KeyUsage"] == "GENERATE_VERIFY_MAC"
    assert (predict["AttestVerdicts"]["Action"], predict["AttestVerdicts"]["Resource"]) == (["kms:GenerateMac"], key)
    assert (retrain["VerifyVerdictAttestations"]["Action"], retrain["VerifyVerdictAttestations"]["Resource"]) == (
        ["kms:VerifyMac"],
        key,
    )
    # And predict only reads the clients table, keyed by API key id; nothing else touches it
    assert predict["ClientRoles"]["Action"] == ["dynamodb:GetItem"]
    assert properties(resources, "ClientsTable")["KeySchema"] == [{"AttributeName": "key_id", "KeyType": "HASH"}]
    assert "ClientsTable" not in json.dumps(role_statements(translated, "RetrainFunctionRole"))


def test_template_bucket_policy_denies_the_functions_erasing_history(resources: dict[str, Any]) -> None:
    statements = properties(resources, "ModelBucketPolicy")["PolicyDocument"]["Statement"]
    [deny] = [statement for statement in statements if statement["Sid"] == "FunctionsKeepHistory"]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"]["AWS"] == [
        {"Fn::GetAtt": ["PredictFunctionRole", "Arn"]},
        {"Fn::GetAtt": ["RetrainFunctionRole", "Arn"]},
    ]
    assert {"s3:DeleteObjectVersion", "s3:PutLifecycleConfiguration", "s3:PutBucketVersioning"} <= set(deny["Action"])


# --- observability ----------------------------------------------------------------------------------------


def test_template_dashboard_is_json_with_the_business_metrics(resources: dict[str, Any]) -> None:
    # Given the dashboard body with its ${...} substitutions filled in
    body = properties(resources, "Dashboard")["DashboardBody"]["Fn::Sub"]
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))

    # Then it is valid JSON and charts every business metric from the Lodbrok namespace
    charted = {
        metric[1]
        for widget in dashboard["widgets"]
        for metric in widget.get("properties", {}).get("metrics", [])
        if metric and metric[0] == observability.METRICS_NAMESPACE
    }
    assert charted >= BUSINESS_METRICS


def alarmed_metrics(alarm: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, metric name) of every metric an alarm reads, directly or in its metric math."""
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return {(properties["Namespace"], properties["MetricName"])}
    return {
        (query["MetricStat"]["Metric"]["Namespace"], query["MetricStat"]["Metric"]["MetricName"])
        for query in properties["Metrics"]
        if "MetricStat" in query
    }


def test_template_alarms_watch_dead_letters_errors_rejected_candidates_and_held_verdicts(
    resources: dict[str, Any],
) -> None:
    # Given the alarms
    alarms = set().union(
        *(alarmed_metrics(body) for body in resources.values() if body["Type"] == "AWS::CloudWatch::Alarm")
    )

    # Then the failure modes of issue #5 each have one
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in alarms
    assert ("AWS/ApiGateway", "5XXError") in alarms
    assert (observability.METRICS_NAMESPACE, "CandidateRejected") in alarms
    assert (observability.METRICS_NAMESPACE, "VerdictsHeld") in alarms


@pytest.mark.parametrize(
    ("alarm", "metrics"),
    [
        ("ReviewBandShareAlarm", {"ReviewBandItems", "PredictionsServed"}),
        ("UnseenTokenShareAlarm", {"UnseenInputTokens", "InputTokens"}),
        ("LabelShareAlarm", {"PredictedLabel", "PredictionsServed"}),
    ],
)
def test_template_drift_alarms_divide_sums_of_the_drift_metrics(
    resources: dict[str, Any], alarm: str, metrics: set[str]
) -> None:
    # Given a drift alarm
    queries = properties(resources, alarm)["Metrics"]
    read = {query["Id"]: query["MetricStat"] for query in queries if "MetricStat" in query}
    expression = next(query for query in queries if query.get("ReturnData"))

    # Then it sums the drift metrics of the function over an hour and alarms on one expression of them
    assert {stat["Metric"]["MetricName"] for stat in read.values()} == metrics
    assert all(stat["Stat"] == "Sum" and stat["Period"] == 3600 for stat in read.values())
    assert all(query.get("ReturnData") is False for query in queries if query is not expression)
    text = (
        expression["Expression"] if isinstance(expression["Expression"], str) else expression["Expression"]["Fn::Sub"]
    )
    assert all(identifier in text for identifier in read)
    assert properties(resources, alarm)["TreatMissingData"] == "notBreaching"


def test_template_passes_the_review_band_to_predict(template: dict[str, Any], resources: dict[str, Any]) -> None:
    variables = properties(resources, "PredictFunction")["Environment"]["Variables"]
    assert variables["REVIEW_BAND"] == {"Ref": "ReviewBand"}
    assert template["Parameters"]["ReviewBand"]["Default"] == ""


def test_template_outputs_name_what_operators_and_the_cli_need(template: dict[str, Any]) -> None:
    assert set(template["Outputs"]) >= REQUIRED_OUTPUTS


# --- packaging and configuration --------------------------------------------------------------------------


def test_layer_requirements_pin_versions_allowed_by_the_project() -> None:
    # Given the layer's requirements and the project's runtime dependencies
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = {canonicalize_name(r.name): r for r in map(Requirement, pyproject["project"]["dependencies"])}
    lines = (ROOT / "layers/model/requirements.txt").read_text().splitlines()
    layer = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]

    # Then the layer installs every runtime dependency except boto3 (the Lambda runtime has it) ...
    assert {canonicalize_name(r.name) for r in layer} == set(project) - {"boto3"}
    for requirement in layer:
        # ... each pinned to a version the project allows, with the same extras
        declared = project[canonicalize_name(requirement.name)]
        pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        assert len(pins) == 1, f"{requirement} is not pinned"
        assert declared.specifier.contains(pins[0], prereleases=True), f"{requirement} vs pyproject {declared}"
        assert requirement.extras == declared.extras


@pytest.mark.parametrize("env", ["default", "dev", "prod"])
def test_samconfig_environment_deploys_with_valid_parameters(
    template: dict[str, Any], samconfig: dict[str, Any], env: str
) -> None:
    # Given one samconfig environment
    deploy = samconfig[env]["deploy"]["parameters"]
    overrides = parameter_overrides(samconfig, env)

    # Then it names a stack, can create the IAM roles and the image repository, and its parameters are valid
    assert samconfig[env]["global"]["parameters"]["stack_name"] == {"default": "lodbrok"}.get(env, f"lodbrok-{env}")
    assert "CAPABILITY_IAM" in deploy["capabilities"]
    assert deploy["resolve_s3"] is True and deploy["resolve_image_repos"] is True
    problems = [f"unknown parameter {name}" for name in overrides if name not in template["Parameters"]]
    for name, value in overrides.items():
        if name in template["Parameters"]:
            problems += check_parameter_value(name, value, template["Parameters"][name])
    assert problems == []


def test_samconfig_prod_is_bigger_safer_and_stricter_than_dev(samconfig: dict[str, Any]) -> None:
    dev, prod = parameter_overrides(samconfig, "dev"), parameter_overrides(samconfig, "prod")
    assert prod["Stage"] == "prod" and dev["Stage"] == "dev"
    assert int(prod["PredictMemorySize"]) > int(dev["PredictMemorySize"])
    assert prod["PointInTimeRecovery"] == "true"
    assert prod["RetrainScheduleEnabled"] == "true"
    assert int(prod["ApiThrottleRateLimit"]) < int(dev["ApiThrottleRateLimit"])


def test_template_passes_sam_validate_lint() -> None:
    # Given the SAM CLI installed next to this interpreter (it brings cfn-lint)
    sam = Path(sys.executable).with_name("sam")
    executable = str(sam) if sam.exists() else shutil.which("sam")
    if executable is None:
        pytest.skip("the SAM CLI is not installed (pip install aws-sam-cli)")

    # When the template is validated and linted offline
    completed = subprocess.run(
        [executable, "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=ROOT,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # Then there is no finding
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_template_gives_both_functions_the_same_verdict_size_limit(template: dict[str, Any]) -> None:
    # The queue path must refuse what the API refuses, and accept what it accepts: no verdict is lost between them
    assert environment(template, "PredictFunction")["MAX_TEXT_CHARS"] == {"Ref": "MaxTextChars"}
    assert environment(template, "RetrainFunction")["MAX_TEXT_CHARS"] == {"Ref": "MaxTextChars"}


def test_template_gateway_responses_tell_a_refused_caller_to_send_x_api_key() -> None:
    # Given the API's own responses, as the local gateway reads them
    answers = Template().gateway_responses()
    # Then a missing or unknown key and an undeclared route are JSON 403s that say where the key goes
    for response_type in ("INVALID_API_KEY", "MISSING_AUTHENTICATION_TOKEN"):
        assert answers[response_type].status == 403
        assert "x-api-key" in json.loads(answers[response_type].body)["message"]


def test_template_review_queue_is_encrypted_with_its_own_key_expires_and_alarms_when_it_grows(
    resources: dict[str, Any],
) -> None:
    # Given the review queue, the one table that keeps user text
    table = properties(resources, "ReviewQueueTable")
    key = properties(resources, "ReviewQueueKey")
    alarm = properties(resources, "ReviewQueueDepthAlarm")

    # Then it is encrypted with a customer key of the stack (rotated), expires by TTL, and is read by priority
    assert table["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Ref": "ReviewQueueKey"},
    }
    assert key["KeyUsage"] == "ENCRYPT_DECRYPT" and key["EnableKeyRotation"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["by_priority"]
    # And its depth raises an alarm past the stack's parameter
    assert (alarm["MetricName"], alarm["Statistic"]) == ("ReviewQueueDepth", "Maximum")
    assert alarm["Threshold"] == {"Ref": "ReviewQueueAlarmDepth"}
    environment = properties(resources, "PredictFunction")["Environment"]["Variables"]
    assert environment["REVIEW_QUEUE_TTL_SECONDS"] == {"Ref": "ReviewQueueTtlSeconds"}
