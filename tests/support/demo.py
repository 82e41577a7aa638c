"""The demo data every local stack starts with, as tests address it."""

from __future__ import annotations

from services.customer.demo import APPLICATIONS, CUSTOMERS

CASEY = str(CUSTOMERS[0].id)


CASEY_FUNDED_LOAN = str(APPLICATIONS[0][0].id)


CASEY_LOAN_UNDER_REVIEW = str(APPLICATIONS[3][0].id)
