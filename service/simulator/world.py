"""The simulator's world: flows, participants and grades, deterministic from a seed.

Only what changed is stored. A flow's fixed attributes are drawn once per flow (a few thousand small
objects at most); a participant and its base grade are drawn on demand from `(seed, flowId, index)`, so a
world of 2,000 flows x 200 participants costs almost nothing until a page of it is asked for. Changes
(`advance.py`) go into small override maps consulted before the drawn values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from service.core.ports import FLOW_STATES

Json = dict[str, Any]

# `POST /flows/search` names; the basic flow's numeric state is the index (1 is PARTICIPATION_NOT_STARTED).
STATE_NAMES: Final = FLOW_STATES
PARTICIPATION_STARTED: Final = 2
MARKING: Final = 3  # PARTICIPATION_ENDED: assessors are marking, grades appear
CONCLUDED: Final = 4
ARCHIVED: Final = 5
FLOW_TYPES: Final = ((2, "FLOWassign"), (4, "FLOWlock"), (8, "FLOWmulti"), (16, "FLOWhandin"), (32, "FLOWoral"))
VARIANTS: Final = ("ORDINARY", "REEXAMINATION", "REMARKING")
PURPOSES: Final = ("EXAMINATION", "COURSE_WORK", "BACHELOR", "MASTER")
GRADES: Final = ("12", "10", "7", "4", "02", "00", "-3")  # the Danish 7-point scale
FIRST_FLOW_ID: Final = 1001
# Participant ids are flowId * PARTICIPANT_SPAN + index + 1, so a participant id names its flow.
PARTICIPANT_SPAN: Final = 100_000
MAX_PARTICIPANTS: Final = PARTICIPANT_SPAN - 1
# The world's dates hang off a fixed epoch (2026-01-01), so the same seed gives the same world every run.
EPOCH: Final = 1_767_225_600
DAY: Final = 86_400
_COURSES: Final = ("Algebra", "Databases", "Ethics", "Statistics", "Law", "Biology", "History", "Networks")
_FIRST: Final = ("Anna", "Bo", "Clara", "Dan", "Emma", "Frej", "Ida", "Jonas", "Karla", "Lukas", "Maja", "Nils")
_LAST: Final = ("Hansen", "Jensen", "Nielsen", "Larsen", "Berg", "Holm", "Dahl", "Lund", "Krogh", "Vestergaard")


def draw(seed: int, *parts: object) -> int:
    """A deterministic 64-bit number for `(seed, *parts)`: the world's only source of variety."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """The fixed attributes of one flow."""

    id: int
    name: str
    sub_name: str
    type_code: int
    type_name: str
    variant: int
    purpose: int
    created: int
    p_start: int
    p_end: int
    a_start: int
    a_end: int


@dataclass(frozen=True, slots=True)
class Grade:
    """One grade version of a participant."""

    grade: str
    admin_grade: str
    date: int


def _flow_spec(seed: int, flow_id: int) -> FlowSpec:
    """Draw the fixed attributes of one flow."""
    d = draw(seed, "flow", flow_id)
    type_code, type_name = FLOW_TYPES[d % len(FLOW_TYPES)]
    created = EPOCH - DAY * (30 + d % 300)
    p_start = created + DAY * (7 + (d >> 8) % 30)
    p_end = p_start + 3600 * (2 + (d >> 16) % 72)
    a_end = p_end + DAY * (7 + (d >> 24) % 21)
    return FlowSpec(
        id=flow_id,
        name=f"{_COURSES[(d >> 32) % len(_COURSES)]} {flow_id}",
        sub_name=f"Exam {2025 + (d >> 40) % 2}",
        type_code=type_code,
        type_name=type_name,
        variant=0 if (d >> 44) % 10 < 8 else 1 + (d >> 48) % 2,
        purpose=(d >> 52) % len(PURPOSES),
        created=created,
        p_start=p_start,
        p_end=p_end,
        a_start=p_end,
        a_end=a_end,
    )


class World:
    """Flows with their current state, participants and grades; mutated only through `advance.py`."""

    def __init__(self, seed: int, flows: int, participants: int) -> None:
        self.seed = seed
        self.participants_per_flow = min(participants, MAX_PARTICIPANTS)
        ids = range(FIRST_FLOW_ID, FIRST_FLOW_ID + flows)
        self.flows: dict[int, FlowSpec] = {i: _flow_spec(seed, i) for i in ids}
        # Cycling through the states guarantees every state is present as soon as there are six flows.
        self.states: dict[int, int] = {i: k % len(STATE_NAMES) for k, i in enumerate(ids)}
        self.grade_overrides: dict[tuple[int, int], Grade] = {}
        self.withdrawn: set[tuple[int, int]] = set()  # grades withdrawn: no assessment until graded again
        self.submissions: dict[tuple[int, int], int] = {}
        self.events: list[Json] = []  # participation events, in time order
        self.sequence = 0

    def next_sequence(self) -> int:
        """The next webhook sequence number: unique per event, increasing."""
        self.sequence += 1
        return self.sequence

    def has_flow(self, flow_id: int) -> bool:
        """True when `flow_id` exists."""
        return flow_id in self.flows

    def participant_id(self, flow_id: int, index: int) -> int:
        """The participant id of the `index`-th participant of a flow."""
        return flow_id * PARTICIPANT_SPAN + index + 1

    def user_id(self, flow_id: int, index: int) -> int:
        """The user behind a participant (students sit several flows, so ids repeat across flows)."""
        return 500_000 + draw(self.seed, "user", flow_id, index) % 400_000

    def basic_flow(self, flow_id: int) -> Json:
        """`GET /flow/{flowId}` (basic-flow, numeric state)."""
        f = self.flows[flow_id]
        return {
            "id": f.id,
            "name": f.name,
            "subName": f.sub_name,
            "creationDate": f.created,
            "type": f.type_code,
            "state": self.states[flow_id],
            "variant": f.variant,
            "purpose": f.purpose,
            "participantStartDate": f.p_start,
            "participantEndDate": f.p_end,
            "assessorStartDate": f.a_start,
            "assessorEndDate": f.a_end,
            "sisInformation": [{"code": f"SIS-{f.id}"}],
            "combinedSubFlowIds": [],
        }

    def search_record(self, flow_id: int) -> Json:
        """One `POST /flows/search` record (flows-search-response, string enums)."""
        f = self.flows[flow_id]
        return {
            "flowId": f.id,
            "title": f.name,
            "subtitle": f.sub_name,
            "externalSourceReferences": [f"SIS-{f.id}"],
            "createdAt": f.created,
            "type": f.type_name,
            "state": STATE_NAMES[self.states[flow_id]],
            "variant": VARIANTS[f.variant],
            "purpose": PURPOSES[f.purpose],
            "participation": {"start": f.p_start, "end": f.p_end},
            "marking": {"start": f.a_start, "end": f.a_end},
        }

    def participant(self, flow_id: int, index: int) -> Json:
        """The `index`-th participant of a flow (flow-participant-response), drawn on demand."""
        d = draw(self.seed, "participant", flow_id, index)
        user_id = self.user_id(flow_id, index)
        pid = self.participant_id(flow_id, index)
        return {
            "participantId": pid,
            "userId": user_id,
            "number": index + 1,
            "uniqueExamId": f"{flow_id}-{index + 1:05d}",
            "activated": self.states[flow_id] >= 1,
            "submissionId": self.submission_id(flow_id, index),
            "groupId": None,
            "assessorIds": [9000 + d % 40],
            "assessorGroupIds": [],
            "user": {
                "id": user_id,
                "firstName": _FIRST[d % len(_FIRST)],
                "lastName": _LAST[(d >> 8) % len(_LAST)],
                "phone": f"+45 {20_000_000 + (d >> 16) % 79_999_999}",
                "externalIds": [{"name": "studentId", "value": f"s{user_id}"}],
            },
        }

    def participants(self, flow_id: int, offset: int, limit: int) -> list[Json]:
        """One page of a flow's participants."""
        stop = min(offset + limit, self.participants_per_flow)
        return [self.participant(flow_id, i) for i in range(offset, stop)]

    def submission_id(self, flow_id: int, index: int) -> int | None:
        """The participant's submission: handed in during an advance, or drawn once participation ended."""
        if (flow_id, index) in self.submissions:
            return self.submissions[(flow_id, index)]
        if self.states[flow_id] >= MARKING and draw(self.seed, "submitted", flow_id, index) % 100 < 90:
            return 800_000_000 + self.participant_id(flow_id, index) % 100_000_000
        return None

    def grade(self, flow_id: int, index: int) -> Grade | None:
        """The participant's current grade version; grades exist only once marking has begun."""
        if self.states[flow_id] < MARKING or (flow_id, index) in self.withdrawn:
            return None
        override = self.grade_overrides.get((flow_id, index))
        if override is not None:
            return override
        d = draw(self.seed, "grade", flow_id, index)
        if d % 100 >= 85:  # some participants are not graded yet
            return None
        f = self.flows[flow_id]
        value = GRADES[(d >> 8) % len(GRADES)]
        return Grade(value, value, f.a_start + (d >> 16) % max(1, f.a_end - f.a_start))

    def assessments(self, flow_id: int) -> list[Json]:
        """`GET /flow/{flowId}/assessments`: every graded participant (assessment records)."""
        out: list[Json] = []
        exported = self.states[flow_id] >= CONCLUDED
        for index in range(self.participants_per_flow):
            g = self.grade(flow_id, index)
            if g is None:
                continue
            pid = self.participant_id(flow_id, index)
            record: Json = {"id": pid, "participantId": pid, "grade": g.grade, "adminGrade": g.admin_grade}
            record.update({"adminGradeDate": g.date, "date": g.date, "exportState": 2 if exported else 0})
            if exported:
                record["exportDate"] = g.date + 3600
            out.append(record)
        return out
