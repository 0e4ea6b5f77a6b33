"""The vCon export as receivers read it: loaded by both vCon libraries on PyPI (`vcon`, the
vcon-dev reference library, and `pydantic-vcon`), with an absolute recording URL from
`api.public_base_url` or the recording inline (base64url) on request."""

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


def _libraries() -> tuple[ModuleType, ModuleType]:
    # Both warn on import (authlib.jose deprecation, a field named "schema"): not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pydantic_vcon
        import vcon

    return vcon, pydantic_vcon


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


def test_vcon_export_loads_in_both_vcon_libraries(seeded: ApiHarness) -> None:
    vcon, pydantic_vcon = _libraries()
    doc = _export(seeded, "c1")
    text = json.dumps(doc)
    ok, errors = vcon.Vcon.validate_json(text)
    assert ok, errors
    loaded = vcon.Vcon.build_from_json(text)
    assert loaded.uuid == doc["uuid"] and len(loaded.parties) == 2
    assert loaded.find_attachment_by_type("alerts")["body"][0]["kind"] == "duration_long"
    assert loaded.find_analysis_by_type("transcript")["vendor"] == "callwatch"
    model = pydantic_vcon.VCon.build_from_json(text)  # raises on any invalid part
    assert model.vcon.value == "0.0.2"
    ok, errors = model.is_valid()
    assert ok, errors
    (dialog,) = model.dialog
    assert dialog.mediatype == "audio/x-wav" and dialog.content_hash.startswith("sha512-")
    # the receiver can fetch the recording: an absolute URL under the public base URL
    assert dialog.url == "https://qa.example.com/cw/api/calls/c1/recording"
    # metadata and alerts describe the call, not party 0
    for attachment in model.attachments:
        assert attachment.party is None and attachment.dialog == 0, attachment.type
    assert {a.type for a in model.attachments} == {"metadata", "alerts"}


def test_vcon_export_can_carry_the_recording_inline(seeded: ApiHarness) -> None:
    vcon, pydantic_vcon = _libraries()
    doc = _export(seeded, "c1", inline="true")
    (dialog,) = doc["dialog"]
    assert dialog["encoding"] == "base64url" and "url" not in dialog
    wav = (seeded.settings.recordings_dir / "2026/11/20/c1.wav").read_bytes()
    body = dialog["body"]
    assert "=" not in body and "+" not in body and "/" not in body
    assert base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)) == wav
    text = json.dumps(doc)
    assert vcon.Vcon.validate_json(text) == (True, [])
    assert pydantic_vcon.VCon.build_from_json(text).dialog[0].encoding.value == "base64url"
    rows = seeded.ctx.access.list_audit(action="export.vcon")
    assert [(r.call_id, r.result) for r in rows] == [("c1", "allowed")]
