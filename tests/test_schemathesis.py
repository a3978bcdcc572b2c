"""Property-based requests over the whole OpenAPI document (schemathesis): no input gives a 5xx, and
every answer's status is one the document lists for the operation.

Every operation is called with generated parameters and bodies (valid and invalid ones), anonymously
and as an administrator, on the real app and database, in-process. Bounded: a few examples per
operation, so the run stays well under two minutes; ``SMARTCODE_FUZZ_EXAMPLES`` raises the count and
``SMARTCODE_FUZZ_RANDOM=1`` draws new cases on each run, for a longer hunt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = int(os.environ.get("SMARTCODE_FUZZ_EXAMPLES", "20"))
RANDOM = os.environ.get("SMARTCODE_FUZZ_RANDOM") == "1"


@dataclass
class Findings:
    """Server errors (with the request that caused them) and statuses the document does not list."""

    server_errors: list[str] = field(default_factory=list)
    undocumented: set[str] = field(default_factory=set)


def _fuzz(
    client: TestClient,
    operation: Any,
    documented: set[str],
    mode: GenerationMode,
    callers: list[dict[str, str]],
    findings: Findings,
) -> Callable[[], None]:
    """A hypothesis test calling ``operation`` with generated cases as each caller."""
    name = f"{operation.method.upper()} {operation.path}"

    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Any) -> None:
        for headers in callers:
            kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
            if not kwargs.get("cookies"):
                kwargs.pop("cookies", None)  # per-request cookies are deprecated in the test client
            if isinstance(kwargs.get("data"), bytes | str):
                kwargs["content"] = kwargs.pop("data")  # httpx takes a raw body as content
            if kwargs.get("files"):
                # A multipart part carries text or bytes; generated numbers are sent as their text
                # (httpx would otherwise fail before sending anything).
                kwargs["files"] = [
                    (key, (part[0], part[1] if isinstance(part[1], bytes | str) else str(part[1]), *part[2:]))
                    for key, part in kwargs["files"]
                ]
            try:
                response = client.request(**kwargs)
            except Exception as exc:  # the test client re-raises what became a 500
                findings.server_errors.append(f"{name}: {exc!r} <- {kwargs}")
                continue
            if response.status_code >= 500:
                findings.server_errors.append(
                    f"{name}: {response.status_code} {response.text[:300]} <- {kwargs}"
                )
            elif str(response.status_code) not in documented:
                findings.undocumented.add(f"{name}: {response.status_code}")

    return call


def test_no_generated_request_gets_a_server_error(client: TestClient, auth: dict[str, str]) -> None:
    document = client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    findings = Findings()
    for result in schema.get_all_operations():
        operation = result.ok()
        documented = set(document["paths"][operation.path][operation.method.lower()]["responses"])
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(client, operation, documented, mode, [{}, auth], findings)()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing invalid to send (no parameters, no body)
    assert not findings.server_errors, "\n".join(findings.server_errors)
    assert not findings.undocumented, sorted(findings.undocumented)
