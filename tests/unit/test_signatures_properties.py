"""Properties of webhook signatures: sign/verify round-trips, any change is caught, rotation, no crashes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.signatures import WebhookVerifier, sign_standard, sign_wiseflow
from service.errors import InvalidSignature

secrets = st.text(min_size=1, max_size=40).filter(lambda s: not s.startswith("whsec_"))
bodies = st.binary(max_size=512)
msg_ids = st.from_regex(r"[A-Za-z0-9_]{1,40}", fullmatch=True)
timestamps = st.integers(min_value=0, max_value=10**11)


@given(secret=secrets, body=bodies)
def test_wiseflow_round_trip(secret: str, body: bytes) -> None:
    """Whatever the secret and body, a body signed by sign_wiseflow verifies."""
    verifier = WebhookVerifier("wiseflow", (secret,))
    assert None is verifier.verify({"X-Wiseflow-Signature": sign_wiseflow(secret, body)}, body, 0).message_id


@given(secret=secrets, body=bodies, flip=st.integers(min_value=0))
def test_wiseflow_any_changed_byte_is_rejected(secret: str, body: bytes, flip: int) -> None:
    """Changing any single byte of the body makes the signature fail."""
    signed = sign_wiseflow(secret, body)
    changed = bytearray(body + b"x")
    changed[flip % len(changed)] ^= 0x01
    verifier = WebhookVerifier("wiseflow", (secret,))
    with pytest.raises(InvalidSignature) as info:
        verifier.verify({"X-Wiseflow-Signature": signed}, bytes(changed), 0)
    assert info.value.reason == "bad_signature"


@given(secret=secrets, msg_id=msg_ids, ts=timestamps, body=bodies, others=st.lists(secrets, max_size=3))
def test_standard_round_trip_with_rotation(
    secret: str, msg_id: str, ts: int, body: bytes, others: list[str]
) -> None:
    """A Standard Webhooks message verifies when its secret is any one of the configured secrets."""
    verifier = WebhookVerifier("standard", (*others, secret))
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign_standard(secret, msg_id, ts, body),
    }
    assert ts == verifier.verify(headers, body, ts).timestamp


@given(
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "X-Wiseflow-Signature", "x"]),
        st.text(max_size=120),
    ),
    body=bodies,
    scheme=st.sampled_from(["wiseflow", "standard"]),
)
def test_garbage_only_ever_raises_invalid_signature(headers: dict[str, str], body: bytes, scheme: str) -> None:
    """Arbitrary headers never crash verification: the only failure is InvalidSignature with a short reason."""
    verifier = WebhookVerifier(scheme, ("s3cret",))
    with pytest.raises(InvalidSignature) as info:
        verifier.verify(headers, body, 1_700_000_000)
    assert info.value.reason.isidentifier()
    assert "s3cret" not in str(info.value)
