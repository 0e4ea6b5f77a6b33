"""Users, login tokens, the audit trail and QA reviews (the tables of migration 0004).

Kept apart from `repository.py` (calls and their analysis). `AccessStore` is the one door to
these tables; like the repository it opens one connection per unit of work, so one store
serves every request thread.

Secrets: passwords are hashed with scrypt (`hashlib.scrypt`, memory-hard, in the standard
library; parameters stored with each hash so they can be raised later), compared in constant
time. Login tokens are 256-bit random strings; only their SHA-256 is stored: a token has
full entropy, so a fast hash is enough and a leaked table gives nothing to replay.

The audit log is append-only: this module only ever INSERTs into it (and the migrations'
triggers refuse UPDATE/DELETE/TRUNCATE in the database itself). It is also tamper-evident:
each row carries `row_hash` = SHA-256(previous row's hash, this row's fields), written under
a lock so the chain has one order; `verify_audit` walks it and names the first row that does
not match (an edit, or a deletion just before it, made by someone who dropped the triggers).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from storage import db
from storage.errors import StorageError, StorageUnavailable
from storage.models import ApiToken, AuditEntry, Call, QaReview, User

ROLES = ("supervisor", "qa", "admin")
AUDIT_RESULTS = ("allowed", "denied", "failed")
_USERS: Table = User.__table__  # type: ignore[assignment]
_TOKENS: Table = ApiToken.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditEntry.__table__  # type: ignore[assignment]
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
class AuditInfo:
    audit_id: int
    at: datetime
    username: str | None
    role: str | None
    action: str
    call_id: str | None
    start_ms: int | None
    end_ms: int | None
    result: str
    status: int
    detail: dict[str, Any]
    client: str | None = None


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """What `verify_audit` found: rows whose chain verified, rows from before the chain
    (migration 0005), and the first row that broke it (None: intact) with why."""

    verified: int
    unchained: int
    broken_id: int | None = None
    problem: str | None = None


def call_digest(call_id: str | None) -> str | None:
    """What the audit chain hashes for a call id: erasure may later replace the id by its
    pseudonym (storage/privacy.py), which must not look like tampering."""
    return hashlib.sha256(call_id.encode()).hexdigest() if call_id else None


def audit_row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous row's hash and this row's fields, canonical JSON."""
    at: datetime = row["at"]
    fields = [
        at.astimezone(UTC).isoformat(timespec="microseconds"),
        row["username"], row["role"], row["action"], row["call_digest"], row["start_ms"],
        row["end_ms"], row["result"], row["status"], row["client"], row["detail"] or {},
    ]  # fmt: skip
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


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


class AccessStore:
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

    # -- audit --------------------------------------------------------------------------
    def audit(
        self,
        *,
        at: datetime,
        action: str,
        result: str,
        status: int,
        username: str | None = None,
        role: str | None = None,
        call_id: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        detail: dict[str, Any] | None = None,
        client: str | None = None,
    ) -> None:
        if result not in AUDIT_RESULTS:
            raise ValueError(f"result must be one of {AUDIT_RESULTS}, got {result!r}")
        row = {
            "at": at, "username": username, "role": role, "action": action,
            "call_id": call_id[:64] if call_id else call_id, "start_ms": start_ms,
            "end_ms": end_ms, "result": result, "status": status,
            "detail": json.loads(json.dumps(detail or {}, default=str)),  # as stored
            "client": client[:64] if client else client,
        }  # fmt: skip
        row["call_digest"] = call_digest(row["call_id"])
        with self._write() as conn:
            if conn.dialect.name == "postgresql":  # one writer at a time extends the chain
                conn.execute(text("SELECT pg_advisory_xact_lock(7401731)"))
            # (SQLite: the write transaction began IMMEDIATE, so it already holds the lock.)
            prev = conn.execute(
                select(_AUDIT.c.row_hash)
                .where(_AUDIT.c.row_hash.is_not(None))
                .order_by(_AUDIT.c.id.desc())
                .limit(1)
            ).scalar()
            prev = prev or ""
            row_hash = audit_row_hash(prev, row)
            conn.execute(insert(_AUDIT).values(**row, prev_hash=prev, row_hash=row_hash))

    def verify_audit(self, batch: int = 1000) -> AuditCheck:
        """Walk the chain in id order; the first row whose hashes do not match is named."""
        verified = unchained = 0
        prev: str | None = None  # None: the chain has not started yet
        last_id = 0
        with self._read() as conn:
            while True:
                rows = (
                    conn.execute(
                        select(_AUDIT)
                        .where(_AUDIT.c.id > last_id)
                        .order_by(_AUDIT.c.id)
                        .limit(batch)
                    )
                    .mappings()
                    .all()
                )
                if not rows:
                    return AuditCheck(verified, unchained)
                for r in rows:
                    last_id = r["id"]
                    if r["row_hash"] is None and prev is None:
                        unchained += 1  # written before migration 0005
                        continue
                    expected_prev = prev or ""
                    if r["prev_hash"] != expected_prev:
                        why = "its prev_hash does not match the row before (one deleted?)"
                        return AuditCheck(verified, unchained, r["id"], why)
                    if r["row_hash"] != audit_row_hash(expected_prev, dict(r)):
                        why = "its fields do not match its hash (changed after writing)"
                        return AuditCheck(verified, unchained, r["id"], why)
                    pseudonymised = (r["call_id"] or "").startswith("psn:")  # by an erasure
                    if not pseudonymised and r["call_digest"] != call_digest(r["call_id"]):
                        why = "its call id does not match its hash (changed after writing)"
                        return AuditCheck(verified, unchained, r["id"], why)
                    prev = r["row_hash"]
                    verified += 1

    def list_audit(
        self,
        *,
        call_id: str | None = None,
        username: str | None = None,
        action: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[AuditInfo]:
        """Audit rows matching every given filter, oldest first (the order they happened)
        unless `newest_first`."""
        stmt = select(_AUDIT)
        for column, wanted in (
            (_AUDIT.c.call_id, call_id),
            (_AUDIT.c.username, username),
            (_AUDIT.c.action, action),
            (_AUDIT.c.result, result),
        ):
            if wanted is not None:
                stmt = stmt.where(column == wanted)
        if since is not None:
            stmt = stmt.where(_AUDIT.c.at >= since)
        if until is not None:
            stmt = stmt.where(_AUDIT.c.at < until)
        order = _AUDIT.c.id.desc() if newest_first else _AUDIT.c.id
        stmt = stmt.order_by(order).limit(limit).offset(offset)
        with self._read() as conn:
            return [
                AuditInfo(
                    r["id"],
                    r["at"],
                    r["username"],
                    r["role"],
                    r["action"],
                    r["call_id"],
                    r["start_ms"],
                    r["end_ms"],
                    r["result"],
                    r["status"],
                    dict(r["detail"]),
                    r["client"],
                )  # fmt: skip
                for r in conn.execute(stmt).mappings()
            ]

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
