"""Webhook signatures: the Standard Webhooks vector, both schemes, rotation, strict timestamps, safe reasons."""

from __future__ import annotations

import pytest

from service.core.signatures import (
    MIN_KEY_BYTES,
    WebhookVerifier,
    check_timestamp,
    key_problem,
    parse_timestamp,
    sign_standard,
    sign_wiseflow,
    standard_key,
)
from service.errors import InvalidSignature

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NOW = 1_700_000_000
SECRET = "webhook-secret-0123456789"


def _reason(fn: object, *args: object) -> str:
    with pytest.raises(InvalidSignature) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.reason


def _standard_headers(sig: str, msg_id: str = VECTOR_ID, ts: str = str(VECTOR_TS)) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig}


def test_standard_webhooks_vector_signs() -> None:
    """sign_standard reproduces the published Standard Webhooks test vector."""
    assert sign_standard(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_standard_webhooks_vector_verifies() -> None:
    """The published vector verifies at its own timestamp and yields the id and timestamp."""
    verifier = WebhookVerifier("standard", (VECTOR_SECRET,))
    result = verifier.verify(_standard_headers(VECTOR_SIG), VECTOR_BODY, VECTOR_TS)
    assert (result.timestamp, result.message_id) == (VECTOR_TS, VECTOR_ID)


def test_standard_accepts_any_of_several_signatures() -> None:
    """A header with several entries (other versions, a wrong v1, the right v1) is accepted."""
    verifier = WebhookVerifier("standard", (VECTOR_SECRET,))
    header = "v1a,abc v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + VECTOR_SIG
    assert verifier.verify(_standard_headers(header), VECTOR_BODY, VECTOR_TS).message_id == VECTOR_ID


def test_standard_accepts_a_valid_signature_after_many_others() -> None:
    """A valid v1 entry after twenty wrong ones (and doubled spaces) is still found."""
    verifier = WebhookVerifier("standard", (VECTOR_SECRET,))
    header = "  ".join(["v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="] * 20 + [VECTOR_SIG])
    assert verifier.verify(_standard_headers(header), VECTOR_BODY, VECTOR_TS).message_id == VECTOR_ID


def test_standard_refuses_a_valid_digest_under_another_version() -> None:
    """The right digest labelled v1a (or with no version) is not a v1 signature: bad_signature."""
    verifier = WebhookVerifier("standard", (VECTOR_SECRET,))
    digest = VECTOR_SIG.removeprefix("v1,")
    header = f"v1a,{digest} {digest} v2,{digest}"
    assert _reason(verifier.verify, _standard_headers(header), VECTOR_BODY, VECTOR_TS) == "bad_signature"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS)}, "missing_signature"),
        ({"webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG}, "missing_id"),
        ({"webhook-id": VECTOR_ID, "webhook-signature": VECTOR_SIG}, "missing_timestamp"),
        (_standard_headers(VECTOR_SIG, msg_id="bad id\n"), "bad_id"),
        (_standard_headers(VECTOR_SIG, ts=" 1614265330"), "bad_timestamp"),
        (_standard_headers(VECTOR_SIG, ts="1614265330.0"), "bad_timestamp"),
        (_standard_headers(VECTOR_SIG, ts=str(VECTOR_TS + 1)), "bad_signature"),
        (_standard_headers(VECTOR_SIG, msg_id="msg_other"), "bad_signature"),
        (_standard_headers("v2," + VECTOR_SIG[3:]), "bad_signature"),
        (_standard_headers(VECTOR_SIG[3:]), "bad_signature"),
        (_standard_headers("v1,!!!notbase64"), "bad_signature"),
    ],
)
def test_standard_rejections_name_their_reason(headers: dict[str, str], reason: str) -> None:
    """Each malformed or forged Standard Webhooks request is refused with its own safe reason."""
    verifier = WebhookVerifier("standard", (VECTOR_SECRET,))
    assert reason == _reason(verifier.verify, headers, VECTOR_BODY, VECTOR_TS)


def test_standard_rejects_a_changed_body() -> None:
    """One changed byte of the body breaks the signature."""
    verifier = WebhookVerifier("standard", (VECTOR_SECRET,))
    body = b'{"test": 2432232315}'
    assert _reason(verifier.verify, _standard_headers(VECTOR_SIG), body, VECTOR_TS) == "bad_signature"


def test_standard_rejects_stale_and_future_timestamps() -> None:
    """A timestamp outside the tolerance, in the past or the future, is stale."""
    verifier = WebhookVerifier("standard", (VECTOR_SECRET,), tolerance=300)
    headers = _standard_headers(VECTOR_SIG)
    assert _reason(verifier.verify, headers, VECTOR_BODY, VECTOR_TS + 301) == "stale_timestamp"
    assert _reason(verifier.verify, headers, VECTOR_BODY, VECTOR_TS - 301) == "stale_timestamp"
    assert verifier.verify(headers, VECTOR_BODY, VECTOR_TS + 300).timestamp == VECTOR_TS


def test_standard_key_of_a_plain_secret_is_its_utf8_bytes() -> None:
    """A secret without the whsec_ prefix is used as its UTF-8 bytes."""
    assert "hé".encode() == standard_key("hé")


def test_standard_key_rejects_a_broken_whsec_secret() -> None:
    """A whsec_ secret that is not base64 is a configuration error, found when the verifier is built."""
    with pytest.raises(ValueError, match="base64"):
        WebhookVerifier("standard", ("whsec_not base64!",))


def test_wiseflow_scheme_verifies_body_hmac_with_custom_header() -> None:
    """The default scheme checks base64(HMAC-SHA256(utf8 secret, raw body)) in the configured header."""
    body = b'{"sequence": 1}'
    verifier = WebhookVerifier("wiseflow", ("s3cret-0123456789",), signature_header="X-Sig")
    assert None is verifier.verify({"x-sig": sign_wiseflow("s3cret-0123456789", body)}, body, NOW).timestamp


def test_wiseflow_scheme_accepts_every_rotated_secret() -> None:
    """With two secrets configured, a body signed with either is accepted; a third is not."""
    body = b"{}"
    verifier = WebhookVerifier("wiseflow", ("old-secret-012345", "new-secret-012345"))
    for secret in ("old-secret-012345", "new-secret-012345"):
        verifier.verify({"X-Wiseflow-Signature": sign_wiseflow(secret, body)}, body, NOW)
    forged = {"X-Wiseflow-Signature": sign_wiseflow("other-secret-01234", body)}
    assert _reason(verifier.verify, forged, body, NOW) == "bad_signature"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_signature"),
        ("", "missing_signature"),
        ("abc", "bad_signature"),
        ("A" * 500, "bad_signature"),
    ],
)
def test_wiseflow_scheme_rejections(header: str | None, reason: str) -> None:
    """A missing, empty, short or oversized signature header is refused with a safe reason."""
    verifier = WebhookVerifier("wiseflow", ("s3cret-0123456789",))
    headers = {} if header is None else {"X-Wiseflow-Signature": header}
    assert reason == _reason(verifier.verify, headers, b"{}", NOW)


def test_no_secret_configured_refuses_everything() -> None:
    """Without a secret nothing verifies (fail closed)."""
    verifier = WebhookVerifier("wiseflow", ())
    assert _reason(verifier.verify, {"X-Wiseflow-Signature": "x"}, b"{}", NOW) == "no_secret_configured"


def test_body_timestamp_is_checked_against_the_window() -> None:
    """The default scheme's body timestamp must lie within the tolerance of now."""
    verifier = WebhookVerifier("wiseflow", (SECRET,), tolerance=60)
    assert verifier.check_body_timestamp(NOW, NOW + 60) == NOW
    assert _reason(verifier.check_body_timestamp, NOW, NOW + 61) == "stale_timestamp"


@pytest.mark.parametrize("raw", [-5, 0, 10**13, 2**63 - 1])
def test_a_far_off_integer_body_timestamp_is_stale(raw: int) -> None:
    """An integer body timestamp however far off (negative, huge) is outside the window: stale_timestamp."""
    verifier = WebhookVerifier("wiseflow", (SECRET,), tolerance=300)
    assert _reason(verifier.check_body_timestamp, raw, NOW) == "stale_timestamp"


@pytest.mark.parametrize(
    "raw",
    [True, 1.5, 1614265330.0, -1, 10**12, "", " 1", "1 ", "+1", "-1", "1e9", "0x10", "١٢٣", "1_000", None, [1]],
)
def test_parse_timestamp_is_strict(raw: object) -> None:
    """Only plain non-negative integers (or ASCII digit strings) of at most 12 digits are timestamps."""
    assert _reason(parse_timestamp, raw) == "bad_timestamp"


def test_parse_timestamp_accepts_integers_and_digit_strings() -> None:
    """An int and its decimal string parse to the same value."""
    assert [parse_timestamp(VECTOR_TS), parse_timestamp(str(VECTOR_TS))] == [VECTOR_TS, VECTOR_TS]


def test_check_timestamp_boundary() -> None:
    """Exactly at the tolerance passes; one second beyond fails."""
    check_timestamp(100, 400, 300)
    assert _reason(check_timestamp, 99, 400, 300) == "stale_timestamp"


def test_verifier_repr_hides_secrets() -> None:
    """The verifier's repr says how many secrets it holds, never what they are."""
    text = repr(WebhookVerifier("wiseflow", ("topsecret-0123456",)))
    assert "topsecret" not in text
    assert "secrets=1" in text


def test_unknown_scheme_is_refused() -> None:
    """A scheme other than wiseflow/standard is a construction error."""
    with pytest.raises(ValueError, match="scheme"):
        WebhookVerifier("hmac", (SECRET,))


@pytest.mark.parametrize("secrets", [("whsec_",), ("whsec_", VECTOR_SECRET), (VECTOR_SECRET, "whsec_")])
def test_an_empty_standard_key_is_refused_so_a_signature_forged_with_it_never_verifies(
    secrets: tuple[str, ...],
) -> None:
    """`whsec_` alone is an empty HMAC key anyone can sign with: no verifier is built with it."""
    forged = sign_standard("whsec_", VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    with pytest.raises(ValueError, match="empty key"):
        WebhookVerifier("standard", secrets).verify(_standard_headers(forged), VECTOR_BODY, VECTOR_TS)


def test_an_empty_wiseflow_key_is_refused() -> None:
    """The default scheme's empty secret is refused the same way."""
    with pytest.raises(ValueError, match="empty key"):
        WebhookVerifier("wiseflow", ("",))


def test_a_signature_forged_with_an_empty_key_does_not_verify_against_a_real_one() -> None:
    """A configured key never accepts what an empty key signed."""
    verifier = WebhookVerifier("standard", (VECTOR_SECRET,))
    forged = sign_standard("whsec_", VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert _reason(verifier.verify, _standard_headers(forged), VECTOR_BODY, VECTOR_TS) == "bad_signature"


@pytest.mark.parametrize(
    ("scheme", "secret", "problem"),
    [
        ("standard", "whsec_", "empty key"),
        ("standard", "whsec_%%%", "base64"),
        ("standard", "whsec_" + "A" * 20, "too short"),  # 15 bytes
        ("wiseflow", "x" * (MIN_KEY_BYTES - 1), "too short"),
        ("wiseflow", "é" * 8, None),  # 16 UTF-8 bytes
        ("standard", VECTOR_SECRET, None),
    ],
)
def test_key_problem_names_what_is_wrong_without_the_secret(
    scheme: str, secret: str, problem: str | None
) -> None:
    """Empty, undecodable and short keys each get their reason; good keys none; the secret is never echoed."""
    found = key_problem(scheme, secret)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
        assert secret.removeprefix("whsec_") not in found or secret == "whsec_"
