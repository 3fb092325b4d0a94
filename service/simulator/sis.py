"""The fake SIS's behaviour on request (`POST /_sis/scenario`), for tests of the grade deliverer.

Keys (several at once; `{"reset": true}` first clears them all), each a way a real SIS can answer:
`{"refuse": {"<participantId>": 422}}` refuses those participants' grades with that 4xx;
`{"answer": {"status": 503, "retry_after": 30}}` answers every delivery so (`null` clears it);
`{"redirect": {"status": 301, "location": "/_sis/grades"}}` answers every delivery with a redirect
(`null` clears it);
`{"endless_body": true}` accepts deliveries with a 201 whose body never ends;
`{"token": "..."}` requires `Authorization: Bearer <token>`; `{"secret": "..."}` requires a valid
Standard Webhooks signature whose `webhook-id` is the Idempotency-Key (`null` clears either).
A delivery refused by any of these is not recorded.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from service.core.signatures import STANDARD_ID_HEADER, WebhookVerifier
from service.errors import InvalidSignature
from service.simulator.http import ApiProblem

KNOWN_KEYS: Final = ("reset", "refuse", "answer", "redirect", "endless_body", "token", "secret")
# The replay window of the signature check: Standard Webhooks' recommended five minutes.
SIGNATURE_TOLERANCE: Final = 300.0


class SisScenarioError(ValueError):
    """A scenario body the fake SIS does not understand; the message names the key."""


@dataclass(slots=True)
class SisScenario:
    """How the fake SIS answers deliveries; the defaults are a well-behaved SIS."""

    refuse: dict[int, int] = field(default_factory=dict)
    answer: tuple[int, float | None] | None = None
    redirect: tuple[int, str] | None = None
    endless_body: bool = False
    token: str | None = None
    secret: str | None = None

    def applied(self, doc: object) -> SisScenario:
        """This scenario updated by a `POST /_sis/scenario` body; raises `SisScenarioError`."""
        if not isinstance(doc, dict) or not doc or any(k not in KNOWN_KEYS for k in doc):
            raise SisScenarioError(f"expected a JSON object with keys among {', '.join(KNOWN_KEYS)}")
        new = SisScenario() if doc.get("reset") else copy.copy(self)
        new.update(doc)
        return new

    def update(self, doc: dict[str, Any]) -> None:
        """Apply the keys of `doc` other than `reset`."""
        if "refuse" in doc:
            refuse = _object("refuse", doc["refuse"])
            if not all(k.isdigit() for k in refuse):
                raise SisScenarioError("refuse: keys are participant ids")
            self.refuse = {int(pid): _status("refuse", s, 400, 499) for pid, s in refuse.items()}
        if "answer" in doc:
            self.answer = None if doc["answer"] is None else _answer(_object("answer", doc["answer"]))
        if "redirect" in doc and doc["redirect"] is None:
            self.redirect = None
        elif "redirect" in doc:
            redirect = _object("redirect", doc["redirect"])
            location = redirect.get("location", "/_sis/grades")
            self.redirect = (_status("redirect", redirect.get("status"), 300, 399), str(location))
        if "endless_body" in doc:
            self.endless_body = bool(doc["endless_body"])
        for name in ("token", "secret"):
            if name in doc:
                setattr(self, name, None if doc[name] is None else str(doc[name]))

    def to_json(self) -> dict[str, Any]:
        """What is in force (the token and secret only as set or not)."""
        answer, redirect = self.answer, self.redirect
        return {
            "refuse": {str(k): v for k, v in self.refuse.items()},
            "answer": None if answer is None else {"status": answer[0], "retry_after": answer[1]},
            "redirect": None if redirect is None else {"status": redirect[0], "location": redirect[1]},
            "endless_body": self.endless_body,
            "token": self.token is not None,
            "secret": self.secret is not None,
        }

    def check(self, headers: Mapping[str, str], raw: bytes, body: Mapping[str, Any], now: float) -> None:
        """Raise the `ApiProblem` this delivery gets, if any (credentials first, as a real SIS would)."""
        if self.token is not None:
            given = headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                raise ApiProblem(401, "a valid bearer token is required", "unauthorized")
        if self.secret is not None:
            _verify(self.secret, headers, raw, now)
        if self.redirect is not None:
            status, location = self.redirect
            raise ApiProblem(status, "the grades live elsewhere", "moved", {"Location": location})
        if self.answer is not None:
            status, retry_after = self.answer
            extra = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            raise ApiProblem(status, "the SIS is unwell (simulated)", "unavailable", extra)
        participant = body.get("participantId")
        refused = self.refuse.get(participant) if isinstance(participant, int) else None
        if refused is not None:
            raise ApiProblem(refused, "the SIS refuses this grade (simulated)", "refused")


def _verify(secret: str, headers: Mapping[str, str], raw: bytes, now: float) -> None:
    """A Standard Webhooks signature by `secret`, with the Idempotency-Key as its `webhook-id`."""
    verifier = WebhookVerifier("standard", (secret,), tolerance=SIGNATURE_TOLERANCE)
    try:
        verified = verifier.verify(headers, raw, now)
    except InvalidSignature as exc:
        raise ApiProblem(401, f"invalid signature: {exc.reason}", "unauthorized") from None
    if verified.message_id != headers.get("Idempotency-Key"):
        raise ApiProblem(401, f"{STANDARD_ID_HEADER} must be the Idempotency-Key", "unauthorized")


def _object(key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SisScenarioError(f"{key}: expected an object")
    return value


def _status(key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SisScenarioError(f"{key}: expected a status from {low} to {high}")
    return value


def _answer(answer: dict[str, Any]) -> tuple[int, float | None]:
    retry_after = answer.get("retry_after")
    if retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, int | float)):
        raise SisScenarioError("answer: retry_after must be a number of seconds")
    status = _status("answer", answer.get("status"), 200, 599)
    return status, None if retry_after is None else float(retry_after)
