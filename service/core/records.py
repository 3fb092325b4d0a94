"""Domain records of the mirror: flows, participants and grade versions, parsed from WISEflow's JSON.

A *grade version* is what the SIS receives: (flowId, participantId, grade, adminGrade, date). Any change of
one of those three values is a new version with a new idempotency key; a re-read of the same version has
the same key, which is what makes redelivery after a crash harmless.

A grade *withdrawn* in WISEflow (the participant's assessment gone, or its grade and admin grade now empty)
reaches the SIS as an explicit record, `{flowId, participantId, grade: null, adminGrade: null, date: null,
withdrawn: true}`, under a key of its own (`wfs-withdrawn-v1-...`), so the SIS can clear what it holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

# `GET /flow/{id}` numbers its states; `POST /flows/search` names them (1 is "ACTIVATED" there).
STATE_BY_NUMBER: Final = {
    0: "NOT_ACTIVATED",
    1: "ACTIVATED",
    2: "PARTICIPATION_STARTED",
    3: "PARTICIPATION_ENDED",
    4: "CONCLUDED",
    5: "ARCHIVED",
}
IDEMPOTENCY_PREFIX: Final = "wfs-grade-v1-"
WITHDRAWAL_PREFIX: Final = "wfs-withdrawn-v1-"


@dataclass(frozen=True, slots=True)
class Flow:
    """A flow's state and dates (unix seconds), whichever endpoint they came from."""

    flow_id: int
    state: str
    title: str | None = None
    created_at: int | None = None
    participation_start: int | None = None
    participation_end: int | None = None
    marking_start: int | None = None
    marking_end: int | None = None

    @classmethod
    def from_search(cls, item: Mapping[str, Any]) -> Flow:
        """From a `POST /flows/search` item (`flowId`, named `state`, `participation`/`marking` ranges)."""
        participation = item.get("participation") or {}
        marking = item.get("marking") or {}
        return cls(
            flow_id=int(item["flowId"]),
            state=str(item["state"]),
            title=item.get("title"),
            created_at=_int(item.get("createdAt")),
            participation_start=_int(participation.get("start")),
            participation_end=_int(participation.get("end")),
            marking_start=_int(marking.get("start")),
            marking_end=_int(marking.get("end")),
        )

    @classmethod
    def from_basic(cls, item: Mapping[str, Any]) -> Flow:
        """From `GET /flow/{flowId}` (a basic-flow: numeric `state`, `participantStartDate` ...)."""
        number = int(item["state"])
        return cls(
            flow_id=int(item["id"]),
            state=STATE_BY_NUMBER.get(number, f"UNKNOWN_{number}"),
            title=item.get("name"),
            created_at=_int(item.get("creationDate")),
            participation_start=_int(item.get("participantStartDate")),
            participation_end=_int(item.get("participantEndDate")),
            marking_start=_int(item.get("assessorStartDate")),
            marking_end=_int(item.get("assessorEndDate")),
        )


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant of a flow, by ids only: names and e-mail addresses are not mirrored."""

    flow_id: int
    participant_id: int
    user_id: int | None = None
    number: int | None = None
    activated: bool | None = None
    group_id: int | None = None
    submission_id: int | None = None

    @classmethod
    def from_api(cls, flow_id: int, item: Mapping[str, Any]) -> Participant:
        """From a `GET /flows/{flowId}/participants` item."""
        user = item.get("user") or {}
        activated = item.get("activated")
        return cls(
            flow_id=flow_id,
            participant_id=int(item["participantId"]),
            user_id=_int(item.get("userId", user.get("id"))),
            number=_int(item.get("number")),
            activated=None if activated is None else bool(activated),
            group_id=_int(item.get("groupId")),
            submission_id=_int(item.get("submissionId")),
        )


@dataclass(frozen=True, slots=True)
class GradeVersion:
    """One participant's grade as the SIS sees it, plus the assessment fields the mirror keeps besides."""

    flow_id: int
    participant_id: int
    grade: str | None
    admin_grade: str | None
    date: int | None
    admin_grade_date: int | None = None
    export_state: int | None = None

    @classmethod
    def from_assessment(cls, flow_id: int, item: Mapping[str, Any]) -> GradeVersion:
        """From a `GET /flow/{flowId}/assessments` item."""
        return cls(
            flow_id=flow_id,
            participant_id=int(item["participantId"]),
            grade=_text(item.get("grade")),
            admin_grade=_text(item.get("adminGrade")),
            date=_int(item.get("date")),
            admin_grade_date=_int(item.get("adminGradeDate")),
            export_state=_int(item.get("exportState")),
        )

    @property
    def is_graded(self) -> bool:
        """True when there is something for the SIS: a grade or an administrative grade."""
        return self.grade is not None or self.admin_grade is not None

    @property
    def idempotency_key(self) -> str:
        """Stable per grade version: sha256 of the JSON [flowId, participantId, grade, adminGrade, date].

        JSON rather than "a:b:c" so that a grade containing ':' or a null can never collide with another.
        """
        # orjson's compact UTF-8 is byte for byte what json.dumps(separators=(",", ":"),
        # ensure_ascii=False) gave (every code point checked), so keys queued before stay the same.
        canonical = orjson.dumps([self.flow_id, self.participant_id, self.grade, self.admin_grade, self.date])
        return IDEMPOTENCY_PREFIX + hashlib.sha256(canonical).hexdigest()

    def payload(self) -> dict[str, Any]:
        """The version as a record (`export grades`; the SIS receives it when it is graded)."""
        return {
            "flowId": self.flow_id,
            "participantId": self.participant_id,
            "grade": self.grade,
            "adminGrade": self.admin_grade,
            "date": self.date,
        }

    @property
    def sink_key(self) -> str:
        """The Idempotency-Key of what the SIS receives for this version: its own key when it is graded; for
        an ungraded one, the participant's withdrawal key (stable per participant, whatever the date)."""
        if self.is_graded:
            return self.idempotency_key
        canonical = orjson.dumps([self.flow_id, self.participant_id])
        return WITHDRAWAL_PREFIX + hashlib.sha256(canonical).hexdigest()

    def sink_payload(self) -> dict[str, Any]:
        """What the SIS receives: the grade version, or for an ungraded one the explicit withdrawal."""
        if self.is_graded:
            return self.payload()
        none = {"grade": None, "adminGrade": None, "date": None}
        return {"flowId": self.flow_id, "participantId": self.participant_id, **none, "withdrawn": True}


def changed_grades(stored: Mapping[int, str], fetched: Iterable[GradeVersion]) -> list[GradeVersion]:
    """The fetched versions whose key differs from the stored key of that participant (or that are new)."""
    return [g for g in fetched if stored.get(g.participant_id) != g.idempotency_key]


def withdrawn_grades(
    flow_id: int, stored: Mapping[int, str], fetched: Iterable[GradeVersion]
) -> list[GradeVersion]:
    """The participants whose grade may have been withdrawn: stored but no longer listed, or changed to
    ungraded; as ungraded versions (the outbox queues a withdrawal only where it sent a grade before)."""
    listed = {g.participant_id: g for g in fetched}
    gone = [GradeVersion(flow_id, pid, None, None, None) for pid in stored if pid not in listed]
    emptied = [
        g for g in listed.values() if not g.is_graded and stored.get(g.participant_id) != g.idempotency_key
    ]
    return gone + emptied


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _text(value: Any) -> str | None:
    """WISEflow sends "" as often as null for "no grade"; both mean none."""
    if value is None or value == "":
        return None
    return str(value)
