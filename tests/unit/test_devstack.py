"""`python -m devstack` (devstack.__main__): its options and the banner it prints once the stack serves."""

from __future__ import annotations

from devstack.__main__ import build_parser, parameter_overrides
from devstack.template import FAST_LOOP, Template


def test_parameter_overrides_fast_batches_verdicts_for_seconds_and_explicit_ones_win() -> None:
    # Given --fast, and --fast with an explicit batching window
    fast = build_parser().parse_args(["--fast"])
    both = build_parser().parse_args(["--fast", "--parameter-overrides", "RetrainBatchingWindowSeconds=7"])
    # Then --fast sets the fast loop's parameters, which the template accepts, and an explicit value wins
    assert parameter_overrides(fast) == dict(item.split("=", 1) for item in FAST_LOOP)
    assert (
        Template(parameter_overrides=parameter_overrides(fast)).queue_trigger("RetrainFunction").batching_window_seconds
        == 2
    )
    assert parameter_overrides(both)["RetrainBatchingWindowSeconds"] == "7"
    # And without it the template's defaults stand
    assert parameter_overrides(build_parser().parse_args([])) == {}
