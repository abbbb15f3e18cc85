"""Schema fuzzing with schemathesis: no 5xx and every response conforms to the OpenAPI document.

Runs in-process against the WSGI app on real PostgreSQL, as an administrador and anonymously, with a
fixed seed so a failure reproduces: at least 2,000 generated cases in all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.builders import Builders
from tests.conftest import make_app

# Over 2,000 cases against real PostgreSQL: about 4.5 min alone, more on a shared machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

# Instants at and around the edges of what the service stores (1900-2199 UTC) and of what Python can
# represent (years 1 and 9999 with extreme offsets), mixed into every date-time the fuzzer generates.
DATETIME_EDGES = [
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999+00:00",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "1900-01-01T00:00:00Z",
    "1900-01-01T00:00:00+00:01",
    "2199-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z",
    "2200-01-01T13:59:59+14:00",
]
_OFFSETS = st.builds(
    timezone,
    st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)).map(
        lambda d: timedelta(minutes=d // timedelta(minutes=1))
    ),
)
schemathesis.openapi.format("date-time", st.one_of(st.sampled_from(DATETIME_EDGES), st.datetimes(timezones=_OFFSETS).map(datetime.isoformat)))


@pytest.fixture(scope="module")
def fuzz_app(database_url: str) -> Flask:
    # Exceptions become 500 problem responses (as in production), so the fuzzer sees them as failures.
    # Login limits off (rate limit and the per-(e-mail, address) lockout): the fuzzer repeats the same e-mails.
    return make_app(
        database_url,
        PROPAGATE_EXCEPTIONS=False,
        TESTING=False,
        LOGIN_RATE_LIMIT="100000 per minute",
        LOGIN_MAX_FAILURES=100000,
        LOGIN_ACCOUNT_MAX_FAILURES=100000,
    )


EDGE_CASES = -1  # counted beside the statuses: cases that carried a date-time edge value


def _fuzz(app: Flask, headers: Callable[[], dict[str, str]], examples: int) -> Counter[int]:
    """Run every operation ``examples`` times; return how many responses of each status were seen."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        @seed(20261128)
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate], database=None)
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            # A fresh token per case: the fuzzer may well call /auth/logout and revoke the previous one.
            response = case.call(headers=headers())
            statuses[response.status_code] += 1
            if any(edge in f"{case.body}{case.query}" for edge in DATETIME_EDGES):
                statuses[EDGE_CASES] += 1
            case.validate_response(response, checks=CHECKS)

        run()
    return statuses


def test_fuzz_as_administrador_and_anonymous(fuzz_app: Flask, build: Builders) -> None:
    admin = build.usuario(3)
    as_admin = _fuzz(fuzz_app, lambda: build.headers(admin), examples=50)
    anonymous = _fuzz(fuzz_app, dict, examples=12)
    assert as_admin.pop(EDGE_CASES, 0) >= 20  # the date-time edges were exercised where a token lets them reach validation
    anonymous.pop(EDGE_CASES, 0)
    assert sum(as_admin.values()) + sum(anonymous.values()) >= 2000
    assert sum(n for status, n in as_admin.items() if status < 300) > 100  # the fuzzer got past authentication
    assert set(anonymous) <= {200, 401, 404, 405, 422}
