"""The vCon export as receivers read it: syntax "0.4.0" of the current IETF core draft
(draft-ietf-vcon-vcon-core-03), loaded by the `vcon` reference library (vcon-dev), with an
absolute recording URL from `api.public_base_url` or the recording inline (base64url) on
request. (`pydantic-vcon` 0.0.2 accepts only the older syntax "0.0.2", so it is not a
receiver of the current draft.)"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from storage.repository import Repository
from tests import api_data
from tests.fixtures_api import ApiHarness, make_api


def _library() -> ModuleType:
    # It warns on import (authlib.jose deprecation): not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import vcon

    return vcon


@pytest.fixture
def seeded(repo: Repository, tmp_path: Path) -> Iterator[ApiHarness]:
    harness = make_api(repo, tmp_path / "data")
    api = harness.settings.api.model_copy(update={"public_base_url": "https://qa.example.com/cw"})
    harness.ctx.settings = harness.settings.model_copy(update={"api": api})
    api_data.seed(repo, harness.settings.recordings_dir)
    with harness.client:
        yield harness


def _export(api: ApiHarness, call_id: str, **params: Any) -> dict[str, Any]:
    r = api.client.get(f"/api/calls/{call_id}/vcon", params=params, headers=api.headers("qa"))
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_vcon_export_loads_in_the_vcon_library(seeded: ApiHarness) -> None:
    vcon = _library()
    doc = _export(seeded, "c1")
    text = json.dumps(doc)
    ok, errors = vcon.Vcon.validate_json(text)
    assert ok, errors
    loaded = vcon.Vcon.build_from_json(text)
    # The syntax version the current core draft requires (-01 to -03: "MUST have the value").
    assert loaded.vcon == "0.4.0"
    assert loaded.uuid == doc["uuid"]
    # The two callers, then callwatch itself: the provenance party of the attachments.
    assert [p["type"] for p in doc["parties"]] == ["person", "person", "bot"]
    assert [(p.role, p.name) for p in loaded.parties] == [
        ("customer", "customer"), ("agent", "a1"), ("monitor", "callwatch")]  # fmt: skip
    assert loaded.find_attachment_by_type("alerts")["body"][0]["kind"] == "duration_long"
    assert loaded.find_analysis_by_type("transcript")["vendor"] == "callwatch"
    (dialog,) = loaded.dialog
    assert dialog["mediatype"] == "audio/x-wav" and dialog["content_hash"].startswith("sha512-")
    assert dialog["parties"] == [0, 1]  # the recording's channels: the callers only
    # the receiver can fetch the recording: an absolute URL under the public base URL
    assert dialog["url"] == "https://qa.example.com/cw/api/calls/c1/recording"
    # metadata and alerts describe the call: added by callwatch, not by a caller
    for attachment in loaded.attachments:
        assert (attachment["party"], attachment["dialog"]) == (2, 0), attachment["type"]
        assert attachment["purpose"] == attachment["type"]
    assert {a["type"] for a in loaded.attachments} == {"metadata", "alerts"}


def test_vcon_export_can_carry_the_recording_inline(seeded: ApiHarness) -> None:
    vcon = _library()
    doc = _export(seeded, "c1", inline="true")
    (dialog,) = doc["dialog"]
    assert dialog["encoding"] == "base64url" and "url" not in dialog
    wav = (seeded.settings.recordings_dir / "2026/11/20/c1.wav").read_bytes()
    body = dialog["body"]
    assert "=" not in body and "+" not in body and "/" not in body
    assert base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)) == wav
    text = json.dumps(doc)
    assert vcon.Vcon.validate_json(text) == (True, [])
    assert vcon.Vcon.build_from_json(text).dialog[0]["encoding"] == "base64url"
    rows = seeded.ctx.access.list_audit(action="export.vcon")
    assert [(r.call_id, r.result) for r in rows] == [("c1", "allowed")]
