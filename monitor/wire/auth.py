"""Switch authentication, sans-I/O: each check takes the request's facts and the configured
secrets and returns `None` (accepted) or a reason safe to log (never a secret, never what the
peer sent as its secret). The gateway answers a refusal with HTTP 401 at the handshake.

- audio fork / jambonz: `Authorization: Basic` (`MOD_AUDIO_FORK_HTTP_AUTH_USER/PASSWORD`,
  jambonz `wsAuth`) or `Authorization: Bearer` (`STREAM_EXTRA_HEADERS`);
- Twilio: `X-Twilio-Signature` = base64 HMAC-SHA1 of the `wss://` URL (plus sorted POST
  parameters, none on a websocket upgrade) keyed with the account auth token;
- Genesys AudioHook: `X-API-KEY` must be a configured key; when that key has a client secret,
  `Signature-Input`/`Signature` (HTTP Message Signatures, hmac-sha256, key = base64-decoded
  secret, `keyid` = the API key, `nonce` >= 22 chars, created within 10 s) must verify over
  `@request-target @authority audiohook-organization-id audiohook-session-id
  audiohook-correlation-id x-api-key`;
- AudioSocket: the peer address must be in an allow-list of networks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable, Mapping

AUDIOHOOK_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
MAX_SIGNATURE_AGE_S = 10
MIN_NONCE_CHARS = 22
_MEMBER = re.compile(r"^\s*([a-z0-9_.*-]+)=(\(.*?\)(?:;.*)?)\s*$", re.I)
_PARAM = re.compile(r';\s*([a-z0-9_.*-]+)=("(?:[^"\\]|\\.)*"|-?\d+)', re.I)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def check_authorization(
    header: str | None, *, tokens: Iterable[str], basic: Iterable[str]
) -> str | None:
    """Bearer token or Basic `user:password` against the configured lists."""
    tokens, basic = list(tokens), list(basic)
    if not header:
        return "missing Authorization header"
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and tokens:
        ok = any(_equal(value.strip(), t) for t in tokens)
        return None if ok else "bearer token not accepted"
    if scheme.lower() == "basic" and basic:
        try:
            pair = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, ValueError):
            return "malformed Basic credentials"
        ok = any(_equal(pair, b) for b in basic)
        return None if ok else "Basic credentials not accepted"
    return f"authorization scheme {scheme[:10]!r} not accepted"


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def check_twilio(signature: str | None, *, auth_token: str, url: str) -> str | None:
    if not signature:
        return "missing X-Twilio-Signature header"
    if not _equal(signature.strip(), twilio_signature(auth_token, url)):
        return "X-Twilio-Signature does not match (check the auth token and public URL)"
    return None


def audiohook_signature_base(components: Mapping[str, str], signature_params: str) -> str:
    lines = [f'"{name}": {value}' for name, value in components.items()]
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines)


def sign_audiohook(
    headers: Mapping[str, str],
    *,
    target: str,
    authority: str,
    api_key: str,
    secret: str,
    created: int,
    nonce: str | None = None,
    label: str = "sig1",
) -> dict[str, str]:
    """Signature-Input/Signature as Genesys sends them (for the simulator and tests)."""
    values = _component_values(headers, target, authority)
    nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
    names = " ".join(f'"{c}"' for c in AUDIOHOOK_COMPONENTS)
    params = (
        f'({names});keyid="{api_key}";nonce="{nonce}";alg="hmac-sha256";'
        f"created={created};expires={created + 30}"
    )
    base = audiohook_signature_base(values, params)
    sig = hmac.new(base64.b64decode(secret), base.encode(), hashlib.sha256).digest()
    return {
        "Signature-Input": f"{label}={params}",
        "Signature": f"{label}=:{base64.b64encode(sig).decode()}:",
    }


def _component_values(headers: Mapping[str, str], target: str, authority: str) -> dict[str, str]:
    lower = {k.lower(): v for k, v in headers.items()}
    out = {"@request-target": target, "@authority": authority}
    for name in AUDIOHOOK_COMPONENTS[2:]:
        out[name] = lower.get(name, "").strip()
    return out


class NonceCache:
    """AudioHook signature nonces seen while their signature is still valid, so a captured
    handshake cannot be replayed within its 10 s window. Bounded: beyond `max_size` the oldest
    are forgotten (they are about to expire anyway at any sane connection rate)."""

    def __init__(self, max_size: int = 100_000) -> None:
        self._until: dict[str, int] = {}  # nonce -> last second it could be replayed
        self._max = max_size

    def first_use(self, nonce: str, *, until: int, now: int) -> bool:
        """Remember `nonce`; False when it was already used and is still valid."""
        if len(self._until) >= self._max or (
            self._until and next(iter(self._until.values())) < now
        ):
            self._until = {n: t for n, t in self._until.items() if t >= now}
            while len(self._until) >= self._max:
                self._until.pop(next(iter(self._until)))
        if nonce in self._until:
            return False
        self._until[nonce] = until
        return True


def check_audiohook(
    headers: Mapping[str, str],
    *,
    target: str,
    authority: str,
    keys: Mapping[str, str],
    now: int,
    nonces: NonceCache | None = None,
) -> str | None:
    """`keys` maps API key -> base64 client secret ("" = unsigned requests allowed). With
    `nonces`, a signature whose nonce was already accepted is refused (a replay)."""
    lower = {k.lower(): v for k, v in headers.items()}
    api_key = lower.get("x-api-key", "").strip()
    secret = next((s for k, s in keys.items() if api_key and _equal(api_key, k)), None)
    if secret is None:
        return "missing or unknown X-API-KEY"
    if not secret:
        return None
    m = _MEMBER.match(lower.get("signature-input", ""))
    if m is None:
        return "missing or malformed Signature-Input"
    label, params_text = m.group(1), m.group(2)
    inner = params_text[1 : params_text.index(")")]
    listed = tuple(x.strip('"') for x in inner.split())
    params = {k.lower(): v.strip('"') for k, v in _PARAM.findall(params_text)}
    if set(listed) != set(AUDIOHOOK_COMPONENTS):
        return "signature does not cover the required components"
    if params.get("alg", "hmac-sha256") != "hmac-sha256" or params.get("keyid") != api_key:
        return "signature alg or keyid not accepted"
    if len(params.get("nonce", "")) < MIN_NONCE_CHARS:
        return "signature nonce too short"
    created = int(params.get("created", "0") or 0)
    expires = int(params.get("expires", str(created + MAX_SIGNATURE_AGE_S)) or 0)
    if not (created - 2 <= now <= created + MAX_SIGNATURE_AGE_S) or now > expires:
        return "signature expired or not yet valid (check the clock)"
    sig_m = re.search(re.escape(label) + r"=:([A-Za-z0-9+/=]+):", lower.get("signature", ""))
    if sig_m is None:
        return "missing or malformed Signature"
    values = _component_values(headers, target, authority)
    base = audiohook_signature_base({c: values[c] for c in listed}, params_text)
    try:
        key = base64.b64decode(secret)
        expected = hmac.new(key, base.encode(), hashlib.sha256).digest()
        got = base64.b64decode(sig_m.group(1))
    except (binascii.Error, ValueError):
        return "signature not decodable"
    if not hmac.compare_digest(expected, got):
        return "signature does not verify"
    if nonces is not None and not nonces.first_use(params["nonce"], until=expires + 2, now=now):
        return "signature nonce already used (a replayed request)"
    return None


def peer_allowed(host: str, networks: Iterable[str]) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)
