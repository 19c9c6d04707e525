"""The harness' waits on the broker, without a broker: ``wait_for_group``'s polling
(:func:`tests.streams._broker_world.wait_stable`) against a fake admin client."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    GroupAuthorizationFailedError,
)

from tests.streams._broker_world import wait_stable


class FakeAdmin:
    """Answers ``describe_groups`` from a script: an exception is raised, a dict returned."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls = 0

    def describe_groups(self, groups: list[str]) -> dict[str, Any]:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return {groups[0]: answer}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def stable(members: int) -> dict[str, Any]:
    return {"group_state": "Stable", "members": [object()] * members}


def test_a_fresh_broker_without_its_offsets_topic_is_waited_out() -> None:
    clock = FakeClock()
    admin = FakeAdmin(
        CoordinatorNotAvailableError(),
        CoordinatorNotAvailableError(),
        CoordinatorLoadInProgressError(),
        {"group_state": "PreparingRebalance", "members": [object()]},
        stable(2),
    )
    got = wait_stable(admin, "g", 2, 90, sleep=clock.sleep, clock=clock)
    assert got["group_state"] == "Stable" and admin.calls == 5
    assert clock.now == 4.0


def test_a_coordinator_that_never_answers_fails_within_the_bound_naming_the_error() -> None:
    clock = FakeClock()
    admin = FakeAdmin(CoordinatorNotAvailableError())
    with pytest.raises(AssertionError) as raised:
        wait_stable(admin, "g", 2, 10, sleep=clock.sleep, clock=clock, detail=lambda: "LOGS")
    message = str(raised.value)
    assert "CoordinatorNotAvailableError" in message and "after 10 s" in message
    assert "LOGS" in message
    assert 10.0 <= clock.now <= 11.0, "bounded by the timeout"


def test_a_group_that_never_stabilises_says_its_last_state() -> None:
    clock = FakeClock()
    admin = FakeAdmin(stable(1))
    with pytest.raises(AssertionError, match="Stable with 1 members after 5 s, not stable with 2"):
        wait_stable(admin, "g", 2, 5, sleep=clock.sleep, clock=clock)


def test_an_error_that_is_not_retriable_is_raised_at_once() -> None:
    clock = FakeClock()
    admin = FakeAdmin(GroupAuthorizationFailedError(), stable(2))
    with pytest.raises(GroupAuthorizationFailedError):
        wait_stable(admin, "g", 2, 90, sleep=clock.sleep, clock=clock)
    assert admin.calls == 1 and clock.now == 0.0
