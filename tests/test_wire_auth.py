"""Switch authentication checks (sans-I/O): each failure gives a reason that names what failed
and never contains the secret or what the peer sent as one."""

from __future__ import annotations

import base64

from monitor.wire import auth

SECRET = base64.b64encode(b"client-secret-32-bytes-long-xxxx").decode()
HEADERS = {
    "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05",
    "Audiohook-Session-Id": "5a0f2b5e-8d1f-4c62-9d6e-0a4a3b1f2c3d",
    "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "X-API-KEY": "key-1",
}


def signed(now: int, **kw: str) -> dict[str, str]:
    sig = auth.sign_audiohook(
        HEADERS,
        target="/audiohook",
        authority="qa.example.com",
        api_key="key-1",
        secret=SECRET,
        created=now,
        **kw,
    )
    return {**HEADERS, **sig}


def flip_a_bit(signature: str) -> str:
    """`sig1=:<base64>:` with one bit of the MAC flipped (the nonce is random, so editing a
    base64 character could be a no-op or touch only padding bits)."""
    label, _, rest = signature.partition("=")
    mac = bytearray(base64.b64decode(rest.strip(":")))
    mac[0] ^= 0x01
    return f"{label}=:{base64.b64encode(bytes(mac)).decode()}:"


def check(headers: dict[str, str], now: int, keys: dict[str, str] | None = None) -> str | None:
    return auth.check_audiohook(
        headers,
        target="/audiohook",
        authority="qa.example.com",
        keys=keys if keys is not None else {"key-1": SECRET},
        now=now,
    )


def test_audiohook_signature_verifies_and_every_tamper_fails() -> None:
    now = 1_790_000_000
    good = signed(now)
    assert check(good, now + 3) is None
    assert "expired" in (check(good, now + 11) or "")
    assert "unknown X-API-KEY" in (check({**good, "X-API-KEY": "key-2"}, now) or "")
    tampered = {**good, "Audiohook-Session-Id": "00000000-0000-0000-0000-000000000000"}
    assert check(tampered, now) == "signature does not verify"
    assert check({**good, "Signature": flip_a_bit(good["Signature"])}, now) == (
        "signature does not verify"
    )
    assert "nonce" in (check(signed(now, nonce="short"), now) or "")
    unsigned = dict(HEADERS)
    assert "Signature-Input" in (check(unsigned, now) or "")
    assert check(unsigned, now, keys={"key-1": ""}) is None  # empty secret: unsigned is fine
    for reason in (check(tampered, now), check(unsigned, now)):
        assert SECRET not in (reason or "")


def test_twilio_signature_over_the_wss_url() -> None:
    url = "wss://qa.example.com/twilio?tenant=bank-a"
    sig = auth.twilio_signature("token123", url)
    assert auth.check_twilio(sig, auth_token="token123", url=url) is None
    https = auth.twilio_signature("token123", url.replace("wss://", "https://"))
    assert "does not match" in (auth.check_twilio(https, auth_token="token123", url=url) or "")
    assert "missing" in (auth.check_twilio(None, auth_token="token123", url=url) or "")


def test_audiofork_basic_and_bearer() -> None:
    basic = "Basic " + base64.b64encode(b"fs:pw").decode()
    assert auth.check_authorization(basic, tokens=[], basic=["fs:pw"]) is None
    wrong = "Basic " + base64.b64encode(b"fs:nope").decode()
    reason = auth.check_authorization(wrong, tokens=[], basic=["fs:pw"]) or ""
    assert "not accepted" in reason and "nope" not in reason and "pw" not in reason
    assert auth.check_authorization("Bearer t0k", tokens=["t0k"], basic=[]) is None
    assert "not accepted" in (auth.check_authorization("Bearer x", tokens=["t0k"], basic=[]) or "")
    assert "missing" in (auth.check_authorization(None, tokens=["t0k"], basic=[]) or "")
    assert "Basic" in (auth.check_authorization("Basic !!", tokens=[], basic=["a:b"]) or "")


def test_audiosocket_allow_list() -> None:
    nets = ["10.0.0.0/8", "127.0.0.1/32"]
    assert auth.peer_allowed("10.1.2.3", nets) and auth.peer_allowed("::ffff:127.0.0.1", nets)
    assert not auth.peer_allowed("192.168.1.1", nets) and not auth.peer_allowed("bogus", nets)
