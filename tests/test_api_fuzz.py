"""OpenAPI-driven fuzzing (schemathesis) of the whole API on a seeded database: no request,
valid or not, may get a 5xx, and every 2xx answer must match the documented schema.

Bounded: each operation gets `EXAMPLES` valid and `EXAMPLES` invalid generated requests
(about 20 operations, so a few hundred requests per backend), with the admin's token so the
handlers behind the role checks are reached. Logout is left out (it would revoke the token
the other cases use).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fixtures_api import ApiHarness

EXAMPLES = 10
# Valid requests reach the handlers; invalid ones (wrong types, missing fields) the validation.
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def test_no_server_errors(seeded: ApiHarness) -> None:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", seeded.app)
    schema = schema.exclude(path="/api/logout")
    headers = seeded.headers("admin")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    statuses: Counter[int] = Counter()
    for operation, mode in itertools.product(operations, MODES):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,  # the same requests every run: a failure reproduces
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: Any) -> None:
            response = case.call_and_validate(
                headers=headers, checks=[not_a_server_error, response_schema_conformance]
            )
            statuses[response.status_code] += 1

        try:
            fuzz()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid request to make.
            assert mode is GenerationMode.NEGATIVE, operation.label
    # Bounded but not vacuous: hundreds of requests, and most reached a handler that answered.
    print(f"fuzz: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
    assert 150 <= sum(statuses.values()) <= 20 * EXAMPLES * len(operations) * len(MODES)
    assert sum(n for code, n in statuses.items() if code < 300) >= 50
