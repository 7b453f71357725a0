"""Property-based fuzzing of every operation in /api/v1/schema/ with schemathesis, in process.

Each operation gets FUZZ_EXAMPLES generated requests (valid and invalid bodies, queries and path
parameters) signed with a tenant owner's full-scope token (staff operations with a verified staff
session). Path parameters are mostly the seeded world's real objects, sometimes random values. Every
response must be no 5xx, carry a status code, content type, headers and body the schema documents for the
operation, reject invalid input and accept valid input. `make test` runs it derandomized (reproducible);
`make fuzz` (called by `make bench`) runs many more examples with random seeds.
"""

from __future__ import annotations

import os
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi import checks as openapi_checks

from tests.fuzz import world as world_module

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))  # per operation; `make fuzz` runs 200
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
# The test signs every request itself; generated (and deliberately broken) credentials would only ever
# test the 401 path, which tests/accounts covers.
schema.config.generation.update(with_security_parameters=False)

# Not positive_data_acceptance: a schema-valid body can still name an instance type, region or SSH key
# that does not exist, and the API rightly answers 400 naming the field.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.unsupported_method,
    openapi_checks.missing_required_header,
]

STAFF_PREFIX = "/api/v1/staff/"
REAL_SHARE = 4  # out of 5 draws a path parameter names a seeded object; the fifth keeps the random value


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Point path parameters at real objects most of the time, except where the case negates them on
    purpose (an invalid path parameter must stay invalid)."""
    world = world_module.CURRENT
    if world is None or not case.path_parameters:
        return st.just(case)
    meta = case.meta
    negated = meta is not None and any(
        location == ParameterLocation.PATH and info.mode == GenerationMode.NEGATIVE
        for location, info in meta.components.items()
    )
    if negated:
        return st.just(case)
    choices = {
        name: st.integers(0, REAL_SHARE).flatmap(
            lambda n, name=name, value=value: (
                st.sampled_from(world.ids[name]) if n < REAL_SHARE and name in world.ids else st.just(value)
            )
        )
        for name, value in case.path_parameters.items()
    }

    def apply(params: dict[str, Any]) -> Any:
        case.path_parameters = params
        return case

    return st.fixed_dictionaries(choices).map(apply)


@pytest.mark.fuzz
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api(case: Any, fuzz_world: world_module.World) -> None:
    staff = case.operation.path.startswith(STAFF_PREFIX)
    headers = fuzz_world.staff_headers if staff else fuzz_world.token_headers
    cookies = fuzz_world.staff_cookies if staff else None
    # A request that fails on the server must not take the rest of the run down with it (its database
    # transaction may be broken): its writes are undone; everything else stays for the next examples.
    savepoint = transaction.savepoint()
    response = case.call(headers=headers, cookies=cookies)
    if response.status_code >= 500:
        transaction.savepoint_rollback(savepoint)
    else:
        transaction.savepoint_commit(savepoint)
    case.validate_response(response, checks=CHECKS, headers=headers)
