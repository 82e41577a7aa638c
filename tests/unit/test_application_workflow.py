"""The loan application workflow allows exactly the brief's transitions and explains refusals."""

import itertools

import pytest

from chassis.errors import FailedPrecondition
from services.customer.domain import TRANSITIONS, ApplicationAction, ApplicationStatus, next_status

S, A = ApplicationStatus, ApplicationAction

# The brief's workflow written out again on purpose, as the tests' own oracle: compared with TRANSITIONS itself, a
# wrong entry in the table would pass.
BRIEF_TRANSITIONS = {
    (S.SUBMITTED, A.REVIEW): S.UNDER_REVIEW,
    (S.UNDER_REVIEW, A.APPROVE): S.APPROVED,
    (S.UNDER_REVIEW, A.REJECT): S.REJECTED,
    (S.SUBMITTED, A.WITHDRAW): S.WITHDRAWN,
    (S.UNDER_REVIEW, A.WITHDRAW): S.WITHDRAWN,
    (S.APPROVED, A.FUND): S.FUNDED,
    (S.FUNDED, A.CLOSE): S.CLOSED,
}


def test_the_transition_table_is_exactly_the_briefs_workflow() -> None:
    assert TRANSITIONS == BRIEF_TRANSITIONS


@pytest.mark.parametrize(("current", "action"), list(BRIEF_TRANSITIONS))
def test_a_legal_action_moves_to_the_next_status(current: ApplicationStatus, action: ApplicationAction) -> None:
    assert next_status(current, action) == BRIEF_TRANSITIONS[(current, action)]


ILLEGAL = [pair for pair in itertools.product(S, A) if pair not in BRIEF_TRANSITIONS]


@pytest.mark.parametrize(("current", "action"), ILLEGAL)
def test_an_illegal_action_is_refused_naming_current_and_requested(
    current: ApplicationStatus, action: ApplicationAction
) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        next_status(current, action)

    assert current.value in str(refused.value)
    assert action.value.lower() in str(refused.value)


def test_final_statuses_say_they_are_final() -> None:
    for final in (S.REJECTED, S.WITHDRAWN, S.CLOSED):
        with pytest.raises(FailedPrecondition, match="it is final"):
            next_status(final, A.REVIEW)
