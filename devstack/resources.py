"""Create the template's buckets, tables, queues and keys in an AWS emulation (a moto server or mock_aws).

Without a session, the clients come from `lodbrok.aws.session()`, the process's one session for its AWS
configuration: a new session per call would load botocore's service models again each time.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from devstack.template import Template
from lodbrok import aws


def create_resources(template: Template, session: boto3.session.Session | None = None) -> dict[str, str]:
    """Create every S3 bucket, DynamoDB table, SQS queue, KMS key and API usage plan; return logical -> physical.

    A KMS key's ARN is chosen by the emulation, so it is registered in `template.physical_ids` for
    the `!GetAtt Key.Arn` of the functions' environment. An API's usage plan gets the logical id SAM
    gives it (`<Api>UsagePlan`); its keys, one per client, are added by `lodbrok.access.api_keys`.
    """
    session = session or aws.session()
    created: dict[str, str] = {}
    kms = session.client("kms")
    for logical_id, spec in template.resources_of_type("AWS::KMS::Key").items():
        properties = template.resolve(spec.get("Properties", {}))
        key = kms.create_key(
            KeySpec=properties["KeySpec"], KeyUsage=properties["KeyUsage"], Description=properties["Description"]
        )
        created[logical_id] = template.physical_ids[logical_id] = key["KeyMetadata"]["Arn"]
    s3 = session.client("s3")
    for logical_id, spec in template.resources_of_type("AWS::S3::Bucket").items():
        name = template.physical_name(logical_id)
        s3.create_bucket(Bucket=name)
        status = template.resolve(spec.get("Properties", {}).get("VersioningConfiguration", {}).get("Status"))
        if status:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
        created[logical_id] = name

    for logical_id in template.resources_of_type("AWS::DynamoDB::Table"):
        created[logical_id] = create_table(template, logical_id, session=session)

    apigateway = session.client("apigateway")
    for logical_id, spec in template.resources_of_type("AWS::Serverless::Api").items():
        plan = spec.get("Properties", {}).get("Auth", {}).get("UsagePlan")
        if plan:
            name = template.resolve(plan.get("UsagePlanName")) or template.physical_name(f"{logical_id}UsagePlan")
            created[f"{logical_id}UsagePlan"] = apigateway.create_usage_plan(name=name)["id"]

    created.update(create_queues(template, session=session))
    return created


def create_queues(template: Template, session: boto3.session.Session | None = None) -> dict[str, str]:
    """Create every SQS queue of the template (attributes, redrive policy); return logical -> physical."""
    sqs = (session or aws.session()).client("sqs")
    queues = template.resources_of_type("AWS::SQS::Queue")
    created = {}
    # Dead-letter queues first: a redrive policy must point at an existing queue.
    for logical_id in sorted(queues, key=lambda name: "RedrivePolicy" in queues[name].get("Properties", {})):
        properties = template.resolve(queues[logical_id].get("Properties", {}))
        name = template.physical_name(logical_id)
        sqs.create_queue(QueueName=name, Attributes=_queue_attributes(properties))
        created[logical_id] = name
    return created


def create_table(
    template: Template, logical_id: str, name: str | None = None, session: boto3.session.Session | None = None
) -> str:
    """Create one DynamoDB table of the template (keys, indexes, on-demand billing, TTL) under `name` or its own."""
    properties = template.resolve(template.resources[logical_id].get("Properties", {}))
    name = name or template.physical_name(logical_id)
    dynamodb = (session or aws.session()).client("dynamodb")
    indexes = [
        {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
        for index in properties.get("GlobalSecondaryIndexes", [])
    ]
    dynamodb.create_table(
        TableName=name,
        KeySchema=properties["KeySchema"],
        AttributeDefinitions=properties["AttributeDefinitions"],
        BillingMode="PAY_PER_REQUEST",
        **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
    )
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and str(ttl.get("Enabled")).lower() == "true":
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    return name


def _queue_attributes(properties: dict[str, Any]) -> dict[str, str]:
    attributes = {
        key: str(properties[key])
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds", "DelaySeconds")
        if key in properties
    }
    if "RedrivePolicy" in properties:
        attributes["RedrivePolicy"] = json.dumps(properties["RedrivePolicy"])
    return attributes
