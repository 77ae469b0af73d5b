"""Stack commands: operate a deployed (or `make local`) stack with your own AWS credentials.

The model registry (publish, versions, rollback, approve, keep, candidates, promote), held verdicts, clients and
their roles, and the verdict memory. Each reads its bucket, table or usage plan from a flag, the environment or
the stack's outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from lodbrok.access.roles import Role
from lodbrok.model.bundle import Bundle
from lodbrok_cli.common import CliError, preview


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The commands that operate a deployed stack."""
    _add_registry_commands(commands)
    _add_held_commands(commands)
    _add_client_commands(commands)
    _add_memory_commands(commands)


def _add_registry_commands(commands: argparse._SubParsersAction) -> None:
    """Publish, list, roll back, approve and keep model versions; list and promote candidates."""
    publish = commands.add_parser("publish", help="upload a bundle to the model bucket as the new active version")
    _add_store_arguments(publish)
    publish.add_argument("bundle", help="bundle file to publish (e.g. from `lodbrok train`)")
    publish.add_argument(
        "--force",
        action="store_true",
        help="publish even when the bundle answers other labels than the active model (clients, verdicts and "
        "review bands that name the old labels stop working)",
    )
    publish.set_defaults(handler=_publish)

    versions = commands.add_parser("versions", help="list every stored version of the model")
    _add_store_arguments(versions)
    versions.add_argument("--json", action="store_true", help="print the versions as JSON")
    versions.set_defaults(handler=_versions)

    rollback = commands.add_parser("rollback", help="make an earlier version active again (history is kept)")
    _add_store_arguments(rollback)
    rollback.add_argument(
        "--to",
        required=True,
        metavar="VERSION",
        help="a label as `lodbrok versions` lists it (v1 means the version first stored as v1, not a later copy "
        "of it), or an S3 version id",
    )
    rollback.epilog = (
        "The restored version is re-approved with your signing key (kms:Sign). Verdict memory entries decided "
        "after it was stored and before the rollback stop answering at once: a rollback undoes what was learned since."
    )
    rollback.set_defaults(handler=_rollback)

    approve = commands.add_parser(
        "approve",
        help="re-approve the active version once after an upgrade (it must carry a trusted key's old signature)",
    )
    _add_store_arguments(approve)
    approve.set_defaults(handler=_approve)

    keep = commands.add_parser(
        "keep", help="never let the bucket's lifecycle rule expire a version (do it for one pinned with MODEL_VERSION)"
    )
    keep.add_argument("version_id", help="S3 version id of the active model key, as `versions` lists it")
    _add_store_arguments(keep)
    keep.set_defaults(handler=_keep)

    candidates = commands.add_parser("candidates", help="list fine-tuned candidates that the gate did not promote")
    _add_store_arguments(candidates)
    candidates.set_defaults(handler=_candidates)

    promote = commands.add_parser("promote", help="promote a stored candidate by hand, overriding the gate")
    _add_store_arguments(promote)
    promote.add_argument("candidate", help="candidate key or file name (see `lodbrok candidates`)")
    promote.set_defaults(handler=_promote)


def _add_held_commands(commands: argparse._SubParsersAction) -> None:
    """Review verdicts held back from learning."""
    held = commands.add_parser("held", help="review verdicts held back from learning (list, accept, reject, clear)")
    held_commands = held.add_subparsers(dest="held_command", required=True, metavar="ACTION")
    held_list = held_commands.add_parser("list", help="held verdicts with the reason and evidence")
    held_list.add_argument(
        "--status", choices=["held", "accepted", "rejected", "all"], default="held", help="which ones (default: held)"
    )
    held_list.add_argument("--json", action="store_true", help="print the records as JSON")
    _add_store_arguments(held_list)
    held_list.set_defaults(handler=_held_list)
    for action, text in (
        ("accept", "learn these verdicts after all (archived again as trusted, and put in the verdict memory)"),
        ("reject", "never learn these verdicts"),
    ):
        review = held_commands.add_parser(action, help=text)
        review.add_argument("keys", nargs="+", metavar="KEY", help="held verdict keys, as `held list` shows them")
        review.add_argument("--reviewer", default=os.environ.get("USER"), help="who decided (default: $USER)")
        review.add_argument("--note", help="why, for the record")
        _add_store_arguments(review)
        review.set_defaults(handler=_held_review, status="accepted" if action == "accept" else "rejected")
    clear = held_commands.add_parser(
        "clear", help="lift a sender's suspension and accept or reject all its held verdicts in one action"
    )
    clear.add_argument("--sender", required=True, help="the sender, as `held list` shows it")
    decision = clear.add_mutually_exclusive_group(required=True)
    decision.add_argument("--accept", dest="status", action="store_const", const="accepted", help="learn them all")
    decision.add_argument("--reject", dest="status", action="store_const", const="rejected", help="learn none")
    clear.add_argument("--reviewer", default=os.environ.get("USER"), help="who decided (default: $USER)")
    clear.add_argument("--note", help="why, for the record")
    _add_store_arguments(clear)
    clear.set_defaults(handler=_held_clear)


def _add_client_commands(commands: argparse._SubParsersAction) -> None:
    """API keys, one per client, and their roles."""
    clients = commands.add_parser("clients", help="API keys, one per client, and their roles (add, list, role, revoke)")
    client_commands = clients.add_subparsers(dest="clients_command", required=True, metavar="ACTION")
    client_add = client_commands.add_parser("add", help="give a new client its own API key (printed once)")
    client_add.add_argument("name", help="the client's name, e.g. support-desk")
    client_add.add_argument("--role", type=Role, choices=list(Role), default=Role.PREDICT, help=_ROLES_HELP)
    client_add.add_argument("--json", action="store_true", help="print name, key id, role and key as JSON")
    client_add.set_defaults(handler=_clients_add)
    client_list = client_commands.add_parser("list", help="clients with a key in the usage plan, with their roles")
    client_list.set_defaults(handler=_clients_list)
    client_role = client_commands.add_parser("role", help="change a client's role, keeping its key")
    client_role.add_argument("name", help="the client's name, as `clients list` shows it")
    client_role.add_argument("role", type=Role, choices=list(Role), help=_ROLES_HELP)
    client_role.set_defaults(handler=_clients_role)
    client_revoke = client_commands.add_parser("revoke", help="refuse a client's key from now on")
    client_revoke.add_argument("name", help="the client's name, as `clients list` shows it")
    client_revoke.set_defaults(handler=_clients_revoke)
    for command in (client_add, client_list, client_role, client_revoke):
        _add_client_arguments(command)


def _add_memory_commands(commands: argparse._SubParsersAction) -> None:
    """The verdict memory's entries."""
    memory = commands.add_parser("memory", help="the verdict memory's entries (list, forget)")
    memory_commands = memory.add_subparsers(dest="memory_command", required=True, metavar="ACTION")
    memory_list = memory_commands.add_parser("list", help="every entry: input digest, whose, label, verdict id, when")
    memory_forget = memory_commands.add_parser("forget", help="remove the entries of one input")
    what = memory_forget.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="the input text")
    what.add_argument("--fields", help="the input record, as a JSON object")
    what.add_argument("--digest", help="the input digest, as `memory list` shows it")
    memory_list.set_defaults(handler=_memory_list)
    memory_forget.set_defaults(handler=_memory_forget)
    for command in (memory_list, memory_forget):
        command.add_argument("--client", help="only this client's own entries (default: every entry)")
        _add_client_arguments(command)


_ROLES_HELP = (
    "predict (classify, model info, own call log) < feedback (also send verdicts that answer only this client) "
    "< reviewer (also send verdicts that answer everyone) < admin; default predict"
)


def _add_client_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--stack", help="deployed stack whose UsagePlanId, ClientsTableName (and table) outputs to use"
    )
    command.add_argument(
        "--usage-plan", help="API Gateway usage plan id (default: $USAGE_PLAN_ID, or the output of --stack)"
    )
    command.add_argument(
        "--clients-table", help="the clients table (default: $CLIENTS_TABLE, or the output of --stack)"
    )


def _add_store_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--bucket", help="model bucket (default: $MODEL_BUCKET, or the output of --stack)")
    command.add_argument("--stack", help="deployed CloudFormation stack whose ModelBucketName output to use")
    command.add_argument(
        "--model-name", default=None, help="model name inside the bucket (default: $MODEL_NAME or default)"
    )
    command.add_argument(
        "--signing-key",
        help="KMS key that signs and verifies models (default: $MODEL_SIGNING_KEY, or the output of --stack)",
    )


def _store(arguments: argparse.Namespace, *, reads_bundles: bool = True) -> Any:
    """The model store; commands that only list or tag versions need no signing key."""
    from lodbrok.registry.signing import BundleSigner
    from lodbrok.registry.store import ModelStore
    from lodbrok.settings import get_settings

    settings = get_settings()
    signer = None
    if reads_bundles:
        key_id = arguments.signing_key or (
            _stack_output(arguments.stack, "ModelSigningKeyArn") if arguments.stack else settings.model_signing_key
        )
        signer = BundleSigner.from_settings(settings, key_id=key_id)
    return ModelStore(_bucket(arguments), arguments.model_name or settings.model_name, signer=signer)


def _archive(arguments: argparse.Namespace) -> Any:
    from lodbrok.settings import get_settings
    from lodbrok.verdicts.archive import VerdictArchive

    return VerdictArchive(_bucket(arguments), get_settings().verdict_archive_prefix)


def _bucket(arguments: argparse.Namespace) -> str:
    from lodbrok.settings import get_settings

    bucket = arguments.bucket or (
        _stack_output(arguments.stack, "ModelBucketName") if arguments.stack else get_settings().model_bucket
    )
    if not bucket:
        raise CliError("no model bucket: pass --bucket NAME or --stack STACK, or set MODEL_BUCKET")
    return bucket


def _stack_output(stack: str, name: str) -> str:
    from botocore.exceptions import ClientError

    from lodbrok import aws

    try:
        outputs = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except ClientError as error:
        raise CliError(f"cannot read stack {stack!r}: {error}") from error
    for output in outputs:
        if output["OutputKey"] == name:
            return str(output["OutputValue"])
    raise CliError(f"stack {stack!r} has no {name} output")


def _publish(arguments: argparse.Namespace) -> int:
    from lodbrok.training.trainer import check_shapes

    store = _store(arguments)
    bundle = Bundle.read(arguments.bundle)
    check_shapes(bundle)  # refused here rather than served: every prediction of a mismatched bundle would fail
    _check_labels(store, bundle, arguments)
    label = store.next_version_label()
    ref = store.publish(bundle.with_metadata(version=label), expected=store.head())
    print(f"published {arguments.bundle} as {label}, the active model (version id {ref.version_id})")
    print(_serving_switch())
    return 0


def _check_labels(store: Any, bundle: Bundle, arguments: argparse.Namespace) -> None:
    """Refuse (or, with --force, warn about) a bundle whose labels differ from the active model's."""
    from lodbrok.registry.store import NoActiveModel

    try:
        active = store.load().bundle()
    except NoActiveModel:
        return
    if set(active.labels) == set(bundle.labels):
        return
    change = (
        f"the active model {active.version} answers the labels {sorted(active.labels)}, {arguments.bundle} answers "
        f"{sorted(bundle.labels)}: clients, verdicts and review bands that name the old labels stop working"
    )
    if not arguments.force:
        raise CliError(f"{change}; pass --force to publish it anyway")
    print(f"warning: {change}", file=sys.stderr)


def _serving_switch() -> str:
    """When the API answers with a newly active model: a warm function looks for one every ModelRefreshSeconds."""
    from lodbrok.settings import get_settings

    seconds = get_settings().model_refresh_seconds
    return (
        f"the API serves it within {seconds:g} s (ModelRefreshSeconds, read here from MODEL_REFRESH_SECONDS): "
        "until a warm predict function looks again it answers with the previous model; GET /model shows which"
    )


def _versions(arguments: argparse.Namespace) -> int:
    from dataclasses import asdict

    versions = _store(arguments, reads_bundles=False).versions()
    if arguments.json:
        print(json.dumps([asdict(version) for version in versions], indent=2))
        return 0
    print(
        f"{'':2}{'version id':<38}{'label':<8}{'action':<24}{'stored':<27}{'parent':<8}{'verdicts':>8}  gate accuracy"
    )
    for version in versions:
        marker = "* " if version.is_active else "  "
        label = f"({version.label})" if version.is_copy else version.label
        action = version.action + (f" of {version.restored_from[:8]}" if version.restored_from else "")
        gate = version.metrics.get("accuracy", "")
        print(
            f"{marker}{version.version_id:<38}{label:<8}{action:<24}{version.stored_at:<27}"
            f"{version.parent:<8}{version.verdict_count:>8}  {gate}"
        )
    if any(version.is_copy for version in versions):
        print(
            "(vN) = the model vN stored again by a rollback or an approval; `rollback --to vN` means the first vN",
            file=sys.stderr,
        )
    return 0


def _rollback(arguments: argparse.Namespace) -> int:
    store = _store(arguments)
    version_id = store.resolve(arguments.to)
    listed = store.versions()
    label = next(version.label for version in listed if version.version_id == version_id)
    active = next((version for version in listed if version.is_active), None)
    if active is not None and active.label == label:
        raise CliError(f"{label} is already the active model (version id {active.version_id})")
    ref = store.rollback(version_id)
    print(
        f"restored {label} (version id {version_id}) as the active model: stored again as {ref.version_id}, re-approved"
    )
    print(_serving_switch())
    print("verdict memory entries decided since that version was stored no longer answer")
    return 0


def _approve(arguments: argparse.Namespace) -> int:
    ref = _store(arguments).approve()
    print(f"approved the active model as version {ref.version_id}")
    return 0


def _verdict_memory(arguments: argparse.Namespace) -> Any:
    """The stack's verdict memory ($VERDICT_MEMORY_TABLE, or the output of --stack), if it has one."""
    from lodbrok import aws
    from lodbrok.settings import get_settings
    from lodbrok.verdicts.memory import VerdictMemory

    table = get_settings().verdict_memory_table
    if arguments.stack:
        table = _stack_output(arguments.stack, "VerdictMemoryTableName")
    return VerdictMemory(table, client=aws.client("dynamodb")) if table else None


def _keep(arguments: argparse.Namespace) -> int:
    _store(arguments, reads_bundles=False).keep(arguments.version_id)
    print(f"version {arguments.version_id} is kept: the lifecycle rule will never expire it")
    return 0


def _client_roles(arguments: argparse.Namespace) -> Any:
    from lodbrok.access.roles import ClientRoles
    from lodbrok.settings import get_settings

    table = arguments.clients_table or (
        _stack_output(arguments.stack, "ClientsTableName") if arguments.stack else get_settings().clients_table
    )
    if not table:
        raise CliError("no clients table: pass --clients-table NAME or --stack STACK, or set CLIENTS_TABLE")
    return ClientRoles(table)


def _client_keys(arguments: argparse.Namespace) -> Any:
    from lodbrok.access.api_keys import ClientKeys
    from lodbrok.settings import get_settings

    usage_plan = arguments.usage_plan or (
        _stack_output(arguments.stack, "UsagePlanId") if arguments.stack else get_settings().usage_plan_id
    )
    if not usage_plan:
        raise CliError("no usage plan: pass --usage-plan ID or --stack STACK, or set USAGE_PLAN_ID")
    return ClientKeys(usage_plan, roles=_client_roles(arguments))


def _clients_add(arguments: argparse.Namespace) -> int:
    added = _client_keys(arguments).add(arguments.name, role=arguments.role)
    if arguments.json:
        print(json.dumps({"name": added.name, "key_id": added.key_id, "role": str(added.role), "key": added.key}))
        return 0
    print(f"client {added.name}: key id {added.key_id}, role {added.role}")
    print(f"API key (shown once; send it in the x-api-key header): {added.key}")
    return 0


def _clients_list(arguments: argparse.Namespace) -> int:
    for client in _client_keys(arguments).list():
        print(f"{client.name}\t{client.key_id}\t{client.role}\t{'enabled' if client.enabled else 'disabled'}")
    return 0


def _clients_role(arguments: argparse.Namespace) -> int:
    changed = _client_keys(arguments).set_role(arguments.name, arguments.role)
    print(f"client {changed.name} (key id {changed.key_id}) now has the role {changed.role}")
    return 0


def _memory_list(arguments: argparse.Namespace) -> int:
    memory = _required_verdict_memory(arguments)
    names = {key_id: name for key_id, (name, _) in _client_roles(arguments).all().items()}
    only = _client_key_id(arguments)
    shown = 0
    for entry in memory.entries():
        if only is not None and entry.sender != only:
            continue
        digest, _, scope = entry.pk.partition("#")
        whose = names.get(scope, scope) if scope else "everyone"
        sender = names.get(entry.sender or "", entry.sender or "-")
        print(f"{digest}\t{whose}\t{entry.label}\t{entry.verdict_id}\t{entry.decided_at}\tsent by {sender}")
        shown += 1
    print(f"{shown} entries", file=sys.stderr)
    return 0


def _memory_forget(arguments: argparse.Namespace) -> int:
    from lodbrok.model.features import canonical_key, input_digest

    if arguments.digest:
        digest = arguments.digest
    elif arguments.text is not None:
        digest = input_digest(canonical_key(arguments.text))
    else:
        try:
            fields = json.loads(arguments.fields)
        except json.JSONDecodeError as error:
            raise CliError(f"--fields is not JSON: {error}") from error
        if not isinstance(fields, dict):
            raise CliError("--fields must be a JSON object")
        digest = input_digest(canonical_key(fields))
    forgotten = _required_verdict_memory(arguments).forget(digest, sender=_client_key_id(arguments))
    print(f"forgot {forgotten} verdict memory entries of input {digest}")
    return 0


def _client_key_id(arguments: argparse.Namespace) -> str | None:
    if not arguments.client:
        return None
    for key_id, (name, _) in _client_roles(arguments).all().items():
        if name == arguments.client:
            return str(key_id)
    raise CliError(f"no client {arguments.client!r} in the clients table")


def _required_verdict_memory(arguments: argparse.Namespace) -> Any:
    memory = _verdict_memory(arguments)
    if memory is None:
        raise CliError("no verdict memory: pass --stack STACK or set VERDICT_MEMORY_TABLE")
    return memory


def _clients_revoke(arguments: argparse.Namespace) -> int:
    revoked = _client_keys(arguments).revoke(arguments.name)
    print(f"revoked client {revoked.name} (key id {revoked.key_id}): its requests are refused from now on")
    return 0


def _candidates(arguments: argparse.Namespace) -> int:
    for candidate in _store(arguments, reads_bundles=False).candidates():
        print(f"{candidate.key}\t{candidate.label}\t{candidate.stored_at}\t{candidate.reason}")
    return 0


def _promote(arguments: argparse.Namespace) -> int:
    ref = _store(arguments).promote_candidate(arguments.candidate)
    print(f"promoted {arguments.candidate} to the active model (version {ref.version_id})")
    print(_serving_switch())
    return 0


def _held_list(arguments: argparse.Namespace) -> int:
    from lodbrok.verdicts.archive import held_sender

    records = _archive(arguments).held(None if arguments.status == "all" else arguments.status)
    if arguments.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return 0
    senders: dict[str, int] = {}
    for record in records:
        verdict = record["verdict"]
        sender = held_sender(record)
        senders[sender] = senders.get(sender, 0) + 1
        text = verdict.get("text") if verdict.get("text") is not None else verdict.get("fields")
        print(f"{record['key']}\t{record['status']}\t{verdict['label']}\t{sender}\t{preview(text)}")
        print(f"    {record['reason']}")
    print(f"{len(records)} {arguments.status} verdicts; by sender: {senders}", file=sys.stderr)
    return 0


def _held_review(arguments: argparse.Namespace) -> int:
    archive = _archive(arguments)
    memory = _verdict_memory(arguments) if arguments.status == "accepted" else None
    for key in arguments.keys:
        _review_one(archive, memory, key, arguments)
    return 0


def _held_clear(arguments: argparse.Namespace) -> int:
    archive = _archive(arguments)
    memory = _verdict_memory(arguments) if arguments.status == "accepted" else None
    # Lifted first: a verdict the retrain holds for the suspension meanwhile is then among those listed next.
    lifted = archive.lift(arguments.sender)
    records = archive.held_by(arguments.sender)
    for record in records:
        _review_one(archive, memory, record["key"], arguments)
    suspension = "suspension lifted" if lifted else "the sender was not suspended"
    print(f"{arguments.status} {len(records)} held verdicts of {arguments.sender}; {suspension}")
    return 0


def _review_one(archive: Any, memory: Any, key: str, arguments: argparse.Namespace) -> None:
    from lodbrok.verdicts.archive import ReviewError
    from lodbrok.verdicts.review import review_held

    try:
        record, remembered = review_held(
            archive, memory, key, arguments.status, reviewer=arguments.reviewer, note=arguments.note
        )
    except ReviewError as error:  # ReviewConflict too: another reviewer's decision stands
        raise CliError(str(error)) from error
    follow_up = f" (archived again as trusted: {record['accepted_key']})" if record.get("accepted_key") else ""
    if remembered:
        follow_up += ", answered from the verdict memory"
    print(f"{arguments.status} {key}{follow_up}")
