"""Roles (lodbrok.roles): their order, and what a stored value means."""

from __future__ import annotations

import pytest

from lodbrok.roles import Role


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.PREDICT, {Role.PREDICT}),
        (Role.FEEDBACK, {Role.PREDICT, Role.FEEDBACK}),
        (Role.REVIEWER, {Role.PREDICT, Role.FEEDBACK, Role.REVIEWER}),
        (Role.ADMIN, set(Role)),
    ],
)
def test_role_allows_what_every_role_below_it_allows(role: Role, allowed: set[Role]) -> None:
    # Then each role allows exactly itself and the roles below it
    assert {required for required in Role if role.allows(required)} == allowed
