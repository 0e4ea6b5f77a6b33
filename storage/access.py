"""Users, login tokens, the audit trail and QA reviews (the tables of migration 0004).

Kept apart from `repository.py` (calls and their analysis). `AccessStore` is the one door to
these tables; like the repository it opens one connection per unit of work, so one store
serves every request thread.

Secrets: passwords are hashed with scrypt (`hashlib.scrypt`, memory-hard, in the standard
library; parameters stored with each hash so they can be raised later), compared in constant
time. Login tokens are 256-bit random strings; only their SHA-256 is stored: a token has
full entropy, so a fast hash is enough and a leaked table gives nothing to replay.

The audit log (append-only, hash-chained) is written and verified by `AuditTrail`
(storage/audit.py), the part of `AccessStore` that owns it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from storage import db
from storage.audit import AuditTrail
from storage.errors import StorageError, StorageUnavailable
from storage.models import ApiToken, Call, QaReview, User

ROLES = ("supervisor", "qa", "admin")
_USERS: Table = User.__table__  # type: ignore[assignment]
_TOKENS: Table = ApiToken.__table__  # type: ignore[assignment]
_REVIEWS: Table = QaReview.__table__  # type: ignore[assignment]
_CALLS: Table = Call.__table__  # type: ignore[assignment]
# scrypt cost: N * 8 * 128 B. OWASP's current recommendation is N = 2**17 (128 MiB, ~0.4-1.2 s
# per hash on a 2-core host; the API runs few at once, see monitor/web/api/throttle.py). The cost
# is stored with each hash, so raising it later keeps old passwords working.
SCRYPT_N = 2**17
_SCRYPT_R, _SCRYPT_P = 8, 1
_MAXMEM = 300 * 2**20  # scrypt needs 128 * r * N bytes: enough for N up to 2**18


class UserExists(StorageError):
    """A user with that name already exists."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: int
    username: str
    role: str
    created_at: datetime
    disabled: bool


@dataclass(frozen=True, slots=True)
class ReviewInfo:
    review_id: int
    call_id: str
    username: str
    created_at: datetime
    score: float | None
    comment: str
    criteria: dict[str, Any]


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32,
        maxmem=_MAXMEM,
    )  # fmt: skip
    return "$".join(["scrypt", str(n), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
            maxmem=_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class AccessStore(AuditTrail):
    def __init__(self, engine: Engine, *, scrypt_n: int = SCRYPT_N) -> None:
        """`scrypt_n`: the cost of new password hashes (a power of two)."""
        if scrypt_n < 2**14 or scrypt_n & (scrypt_n - 1):
            raise ValueError(f"scrypt_n must be a power of two >= 2**14, got {scrypt_n}")
        self._engine = engine
        self._scrypt_n = scrypt_n

    # -- users --------------------------------------------------------------------------
    def create_user(self, username: str, password: str, role: str, *, at: datetime) -> UserInfo:
        """Add a user; raises `UserExists` for a taken name, ValueError for bad input."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if not username or len(username) > 64 or username != username.strip():
            raise ValueError("username must be 1-64 characters without surrounding spaces")
        if len(password) < 8:
            raise ValueError("password must have at least 8 characters")
        row = {
            "username": username,
            "password_hash": hash_password(password, self._scrypt_n),
            "role": role,
            "created_at": at,
            "disabled": False,
        }
        try:
            with self._write() as conn:
                user_id = conn.execute(insert(_USERS).values(**row)).inserted_primary_key[0]  # type: ignore[index]
        except IntegrityError as exc:
            raise UserExists(f"user {username!r} already exists") from exc
        return UserInfo(int(user_id), username, role, at, False)

    def list_users(self) -> list[UserInfo]:
        with self._read() as conn:
            rows = conn.execute(select(_USERS).order_by(_USERS.c.username)).mappings()
            return [_user(r) for r in rows]

    def count_admins(self) -> int:
        with self._read() as conn:
            rows = conn.execute(select(_USERS.c.id).where(_USERS.c.role == "admin")).all()
            return len(rows)

    def set_user(
        self, username: str, *, role: str | None = None, disabled: bool | None = None
    ) -> UserInfo | None:
        values: dict[str, Any] = {}
        if role is not None:
            if role not in ROLES:
                raise ValueError(f"role must be one of {ROLES}, got {role!r}")
            values["role"] = role
        if disabled is not None:
            values["disabled"] = disabled
        with self._write() as conn:
            if values:
                conn.execute(update(_USERS).where(_USERS.c.username == username).values(values))
            row = conn.execute(select(_USERS).where(_USERS.c.username == username)).mappings()
            found = row.first()
            return _user(found) if found else None

    def authenticate(self, username: str, password: str) -> UserInfo | None:
        """The user if the password is right and the user is enabled, else None."""
        with self._read() as conn:
            row = conn.execute(select(_USERS).where(_USERS.c.username == username)).mappings()
            found = row.first()
        if found is None:
            # Same work as a real check, so response time does not tell which names exist.
            verify_password(password, _dummy_hash(self._scrypt_n))
            return None
        if not verify_password(password, found["password_hash"]) or found["disabled"]:
            return None
        return _user(found)

    # -- tokens -------------------------------------------------------------------------
    def issue_token(self, user_id: int, *, at: datetime, ttl_s: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._write() as conn:
            conn.execute(
                insert(_TOKENS).values(
                    token_hash=token_digest(token),
                    user_id=user_id,
                    created_at=at,
                    expires_at=at + timedelta(seconds=ttl_s),
                    revoked_at=None,
                )
            )
        return token

    def user_for_token(self, token: str, *, at: datetime) -> UserInfo | None:
        """The enabled user a live (not expired, not revoked) token belongs to."""
        stmt = (
            select(_USERS)
            .join(_TOKENS, _TOKENS.c.user_id == _USERS.c.id)
            .where(
                _TOKENS.c.token_hash == token_digest(token),
                _TOKENS.c.revoked_at.is_(None),
                _TOKENS.c.expires_at > at,
                _USERS.c.disabled.is_(False),
            )
        )
        with self._read() as conn:
            found = conn.execute(stmt).mappings().first()
        return _user(found) if found else None

    def revoke_token(self, token: str, *, at: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                update(_TOKENS)
                .where(_TOKENS.c.token_hash == token_digest(token), _TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )

    # -- QA reviews ---------------------------------------------------------------------
    def add_review(
        self,
        call_id: str,
        *,
        username: str,
        at: datetime,
        score: float | None,
        comment: str,
        criteria: dict[str, Any],
    ) -> ReviewInfo:
        row = {"call_id": call_id, "username": username, "created_at": at, "score": score,
               "comment": comment, "criteria": criteria}  # fmt: skip
        with self._write() as conn:
            review_id = conn.execute(insert(_REVIEWS).values(**row)).inserted_primary_key[0]  # type: ignore[index]
        return ReviewInfo(int(review_id), call_id, username, at, score, comment, criteria)

    def list_reviews(self, call_id: str) -> list[ReviewInfo]:
        stmt = (
            select(_REVIEWS)
            .where(_REVIEWS.c.call_id == call_id)
            .order_by(_REVIEWS.c.created_at, _REVIEWS.c.id)
        )
        with self._read() as conn:
            return [
                ReviewInfo(
                    r["id"],
                    r["call_id"],
                    r["username"],
                    r["created_at"],
                    r["score"],
                    r["comment"],
                    dict(r["criteria"]),
                )  # fmt: skip
                for r in conn.execute(stmt).mappings()
            ]

    # -- plumbing -----------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with db.write_transaction(self._engine) as conn:
                yield conn
        except IntegrityError:
            raise
        except OperationalError as exc:
            raise StorageUnavailable(f"database write failed: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database write failed: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise StorageUnavailable(f"database query failed: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database query failed: {exc}") from exc


def _user(row: Any) -> UserInfo:
    return UserInfo(
        row["id"], row["username"], row["role"], row["created_at"], bool(row["disabled"])
    )


@functools.cache
def _dummy_hash(n: int) -> str:
    return hash_password(secrets.token_urlsafe(12), n)
