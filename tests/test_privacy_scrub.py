"""Card data the switch sends besides speech (monitor.privacy.scrub): metadata keys like
`cardNumber` and values holding a card or ID number are masked before they are stored; DTMF key
presses leave only a "*" each, and nothing at all inside a secure-entry stage (P3)."""

from __future__ import annotations

from monitor.events import Marked
from monitor.privacy.scrub import DtmfMasker, key_mask, scrub


def test_sensitive_keys_are_masked_whatever_their_value() -> None:
    meta = {
        "cardNumber": "4111111111111111",
        "card_number": 4111111111111111,
        "CVV": "737",
        "expiryDate": "12/27",
        "idNumber": "11010519491231002X",
        "身份证号": "x",
        "pin": 1234,
        "company": "Acme",  # "pan" only as a whole key: no false alarm on "company"
        "queue": "payments",
    }
    assert scrub(meta) == {
        "cardNumber": "[PAN]",
        "card_number": "[PAN]",
        "CVV": "[CVV]",
        "expiryDate": "[EXPIRY]",
        "idNumber": "[身份证号]",
        "身份证号": "[身份证号]",
        "pin": "[REDACTED]",
        "company": "Acme",
        "queue": "payments",
    }


def test_card_and_id_numbers_are_masked_inside_any_value() -> None:
    data = {
        "note": "customer paid with 4111-1111-1111-1111 today",
        "nested": {"refs": ["ref 11010519491231002X", 5555555555554444, "order 774319026"]},
        "payload": {"event": "payment", "billing": {"cc": 1, "securityCode": None}},
        "ok": True,
        "luhn_invalid": "4111111111111112",
        "sent_ms": 1733561234563,  # epoch milliseconds that happen to pass Luhn: kept
    }
    assert scrub(data) == {
        "note": "customer paid with [PAN] today",
        "nested": {"refs": ["ref [身份证号]", "[PAN]", "order 774319026"]},
        "payload": {"event": "payment", "billing": {"cc": 1, "securityCode": None}},
        "ok": True,
        "luhn_invalid": "4111111111111112",
        "sent_ms": 1733561234563,
    }
    assert key_mask("Card-Security.Code") == "[CVV]" and key_mask("callid") is None


def test_dtmf_leaves_a_star_per_press_and_nothing_in_a_secure_stage() -> None:
    m = DtmfMasker(["secure_entry_start"], ["secure_entry_end"])
    assert [m.press() for _ in "41"] == [{"digit": "*"}, {"digit": "*"}]
    assert m.marker("hold") is None
    assert m.marker("secure_entry_start") == "secure_entry_started"
    assert [m.press() for _ in "737"] == [None, None, None]
    assert m.marker("secure_entry_end") == "secure_entry_ended"
    assert m.press() == {"digit": "*"}


def test_the_board_shows_a_paused_call_until_it_resumes() -> None:
    from datetime import UTC, datetime

    from monitor.board.state import BoardState
    from tests.test_board_state import opened

    b = BoardState(today=datetime(2026, 11, 21, tzinfo=UTC).date())
    b.apply(opened(), 0.0)
    at = datetime(2026, 11, 21, 9, 0, 5, tzinfo=UTC)
    b.apply(Marked("c1", 5, 5000, at, "capture_paused", None, {"by": "sup-1"}), 0.1)
    assert b.snapshot()["calls"][0]["status"] == "paused"
    b.apply(Marked("c1", 6, 9000, at, "capture_resumed", None, {"by": "sup-1"}), 0.2)
    assert b.snapshot()["calls"][0]["status"] == "active"


def test_a_uuid_is_an_identifier_not_a_card_number() -> None:
    """A leg's UUID whose digits happen to hold a Luhn-valid run (seen on an AudioSocket
    transfer: ...-bd45-336753860621) is kept whole; a card number beside it is still masked."""
    from monitor.privacy.scrub import scrub

    leg = "6128f028-aa1a-42fc-bd45-336753860621"
    out = scrub({"uuid": leg, "note": "card 4111 1111 1111 1111"})
    assert out["uuid"] == leg
    assert "4111" not in out["note"] and "[PAN]" in out["note"]
