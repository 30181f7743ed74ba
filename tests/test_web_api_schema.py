"""Property-based testing of the JSON API against its own OpenAPI schema (schemathesis):
every generated request, valid or not, must get a documented status, the documented content
type and a body that matches the schema; no 5xx."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from support.web import client, form_token, make_app
from conftest import SHARED

# The schema is loaded at import time (schemathesis parametrizes at collection); the app and
# its database are built lazily on first use through the fixture below.
_state: dict = {}


def _app():
    return _state["app"]


@pytest.fixture(scope="module", autouse=True)
def _server(atlas_db, tmp_path_factory):
    # generous limits: the fuzzer posts far more feedback than a person would
    _state["app"] = make_app(atlas_db, tmp_path_factory.mktemp("fb") / "feedback.sqlite3",
                             feedback_per_minute=100000, feedback_per_day=100000)
    c = client(_state["app"])
    _state["token"] = form_token(c.get("/ports/22").text)
    _state["cookie"] = c.cookies.get("pa_csrf")
    c.close()
    yield


def _schema_dict() -> dict:
    from portatlas.web.openapi import schema

    return schema()


# Invalid data must be refused with a 4xx; the defaults leave out 413, which is what an
# over-long body (a comment past its cap, say) rightly gets.
_CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
    "expected-statuses": ["400", "403", "404", "405", "413", "415", "429"]}}})
schema = schemathesis.openapi.from_dict(_schema_dict(), config=_CONFIG)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    headers = {}
    if case.method == "POST":
        # a real client's token and cookie, so valid bodies are really stored (and checked)
        headers = {"x-csrf-token": _state["token"], "cookie": f"pa_csrf={_state['cookie']}"}
    excluded = []
    if case.path in ("/api/ranges/{spec}", "/api/local"):
        # What a pattern cannot say (LO <= HI, the span limit, a user that exists, port and
        # transport that agree) is rightly a 400, which this heuristic check would call a
        # failure; every other check still applies.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(app=_app(), base_url="http://127.0.0.1:8357", headers=headers,
                           excluded_checks=excluded)


def test_schema_is_served_and_valid_openapi():
    from portatlas.web.openapi import schema as build

    c = client(_app())
    try:
        served = c.get("/openapi.json").json()
    finally:
        c.close()
    assert served["openapi"].startswith("3.1")
    assert json.loads(json.dumps(build())) == served
    assert SHARED.is_dir()
