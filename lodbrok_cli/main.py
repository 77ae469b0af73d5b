"""`lodbrok`: train, evaluate, inspect and use model bundles, and operate a stack, from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lodbrok.access.api_keys import ClientKeyError
from lodbrok.model.bundle import BundleError
from lodbrok.model.data import DataError
from lodbrok.model.decision import DecisionError
from lodbrok.registry.signing import SigningNotConfigured
from lodbrok.registry.store import ModelStoreError
from lodbrok_cli import model_commands, stack_commands
from lodbrok_cli.common import CliError
from lodbrok_cli.quiet import quiet_tensorflow

DESCRIPTION = """\
Lodbrok: a text classifier that learns from its users' verdicts.

A model lives in one bundle file (*.lbk): the trainable Keras weights, the LiteRT model that
serves predictions, the featurizer settings, the labels, the training sample and the gate set.

Typical first steps:
  lodbrok train --out model.lbk                  train on the built-in SMS spam demo data
  lodbrok evaluate --model model.lbk             metrics on the bundle's gate set
  lodbrok predict --model model.lbk "WIN a prize now!"
  lodbrok finetune --model model.lbk --data verdicts.jsonl --out model-v2.lbk

Against a deployed stack, or `make local` (paste the `export` block its banner prints, then leave out
--bucket, --signing-key and --usage-plan):
  lodbrok publish model.lbk --bucket BUCKET      make a bundle the active model
  lodbrok versions --bucket BUCKET               every stored version, * = active
  lodbrok rollback --to v1 --bucket BUCKET       make v1 active again (a label or version id)
  lodbrok approve --bucket BUCKET                re-approve the active model once after an upgrade
  lodbrok clients add NAME --role feedback --stack STACK   one API key per client, with its role (list, role, revoke)
  lodbrok memory list --stack STACK              the verdict memory's entries (forget --text T removes one)

Datasets are CSV, TSV or JSONL files with a `label` column/key and either a `text` column/key or
named record fields (see README.md).
"""


def main(argv: Sequence[str] | None = None) -> int:
    """The `lodbrok` program (arguments from the command line), or one command called with `argv`."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if argv is None:
        quiet_tensorflow()
    try:
        return int(arguments.handler(arguments) or 0)
    except (
        CliError,
        BundleError,
        DataError,
        DecisionError,
        ModelStoreError,
        SigningNotConfigured,
        ClientKeyError,
        FileNotFoundError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lodbrok", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_commands.add_commands(commands)
    stack_commands.add_commands(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
