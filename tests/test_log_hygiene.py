"""Log hygiene at DEBUG (RELIABILITY.md P8; issue 17 item 3).

Every test session runs at DEBUG and scans all its logs when it ends (tests/fixtures_logs.py);
the last tests here prove that scan: it finds each kind of leak, masks it in its report, and
fails a session whose logs hold one.

With `log_level = "DEBUG"` the log once held `Authorization: Bearer ...`, a `?token=` query
string, a card number from the metadata frame and every DTMF frame (websockets' own DEBUG
logger). A real gateway in this process, logging through `configure_logging("DEBUG")`, takes a
call that carries all of them plus a refused handshake; the captured log holds none of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from monitor.runtime.logs import configure_logging, scrub
from tests.fixtures_server import REPO_ROOT
from tests.gateway_support import in_process_gateway
from tests.log_scan import LogScanner

TOKEN = "fork-tok-5d1f0a9e"
QUERY_SECRET = "qs-secret-77b2c"
PAN = "4111 1111 1111 1111"
DTMF = "9374051862937405"  # 16 key presses


@pytest.fixture
def debug_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    # After capsys: the handler writes to the captured stderr.
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("websockets").level)
    configure_logging("DEBUG", "text")
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("websockets").setLevel(saved[2])


def test_debug_log_holds_no_secret_card_number_or_dtmf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], debug_logging: None
) -> None:
    async def scenario() -> None:
        auth = {"audiofork_tokens": [TOKEN], "require": True}
        async with in_process_gateway(tmp_path, switch_auth=auth) as gw:
            with pytest.raises(InvalidStatus):
                async with connect(
                    gw.url + f"/audiofork?token={QUERY_SECRET}",
                    additional_headers={"Authorization": "Bearer wrong-" + TOKEN},
                ):
                    pass
            async with connect(
                gw.url + f"/audiofork?token={QUERY_SECRET}",
                additional_headers={"Authorization": f"Bearer {TOKEN}"},
            ) as ws:
                meta = {"callSid": "hyg-1", "sampleRate": 8000, "mixType": "stereo", "card": PAN}
                await ws.send(json.dumps(meta))
                for digit in DTMF:
                    await ws.send(json.dumps({"event": "dtmf", "digit": digit}))
                    await ws.send(bytes(640))
                await ws.send(json.dumps({"event": "note", "text": f"card {PAN.replace(' ', '')}"}))
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    log = capsys.readouterr().err
    assert "DEBUG" in log or "call started" in log  # the log was captured at all
    for secret in (TOKEN, QUERY_SECRET, PAN, PAN.replace(" ", ""), DTMF):
        assert secret not in log
    assert not re.search(r"digit\W{1,6}\d", log)


@pytest.mark.parametrize(
    ("line", "gone"),
    [
        ("< authorization: Basic ZnM6cHc=", "ZnM6cHc="),
        ("X-Twilio-Signature: abcDEF123=", "abcDEF123="),
        ("GET /board/ws?session=1&access_token=zz9 HTTP/1.1", "zz9"),
        ('{"media": {"payload": "f39/fn5+fn5+fn5+fn5+fn5+"}}', "f39/fn5+fn5+"),
        ("pan 4012-8888-8888-1881 end", "4012-8888-8888-1881"),
    ],
)
def test_scrub_masks(line: str, gone: str) -> None:
    assert gone not in scrub(line)


def test_scrub_keeps_ordinary_numbers() -> None:
    line = "frames=4111111111111112 call_id=20261207T064303-48f19b"  # not Luhn-valid
    assert scrub(line) == line


# -- the scan of the whole session's logs (tests/fixtures_logs.py, tests/log_scan.py) ---------

# (rule, line): pairs, not a dict, so the suite's secret harvest (`name: "value"`) skips them.
LEAKS = dict(
    [
        ("bearer", "GET /audiofork authorization: Bearer abc123def456ghi"),
        ("test-secret", f"handshake refused, token {TOKEN} not known"),
        ("query-secret", "GET /board/ws?session=1&token=zz91ab HTTP/1.1"),
        ("pan", f"metadata card={PAN}"),
        ("audio", '{"media": {"payload": "' + "f39/fn5+" * 30 + '"}}'),
        ("transcript", "segment text: for security purposes could you give me the last four"),
    ]
)


def test_the_scanner_finds_each_kind_of_leak_and_masks_it(tmp_path: Path) -> None:
    scanner = LogScanner.for_suite()
    assert TOKEN in scanner.secrets and "board-test-password" in scanner.secrets
    log = tmp_path / "planted.txt"  # not `*.log`: this session's own scan must not see it
    clean = "12:00:01 INFO    callwatch.gateway: call started call_id=20261207T064303-48f19b"
    log.write_text("\n".join([clean, *LEAKS.values(), "其中有两个是内因的指标", clean]) + "\n")
    hits = scanner.scan_file(log)
    assert [h.line for h in hits] == list(range(2, 2 + len(LEAKS) + 1))
    for hit, rule in zip(hits, [*LEAKS, "transcript"], strict=True):
        assert rule in hit.rule.split(","), (hit, rule)
    for hit in hits:
        assert hit.path == log and f"<{hit.rule.split(',')[0]}>" in hit.masked
        for secret in (TOKEN, PAN, "abc123def456ghi", "zz91ab", "f39/fn5+" * 30, "last four"):
            assert secret not in str(hit)
    # What callwatch writes (every line through `scrub`) holds none of the credentials.
    for rule in ("bearer", "test-secret", "query-secret", "pan", "audio"):
        if rule != "test-secret":  # a token in prose is not a header: the gateway never says it
            assert scanner.scan_line(scrub(LEAKS[rule])) is None, rule


def _run_session(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A pytest session of its own, with the P8 plugin, running one test with `body`."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(
        "import logging\nfrom pathlib import Path\n\n\n"
        f"def test_inner(tmp_path: Path) -> None:\n{textwrap.indent(body, '    ')}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("CALLWATCH_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "tests.fixtures_logs", "--basetemp", str(tmp_path / "bt"), *args, "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_session_scan_fails_a_run_whose_logs_leak() -> None:
    # Outside this session's temporary directory: its own scan must not see the planted logs.
    with tempfile.TemporaryDirectory(prefix="p8-") as tmp:
        _leaky_and_clean_sessions(Path(tmp))


def _leaky_and_clean_sessions(tmp_path: Path) -> None:
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    run = _run_session(
        leaky,
        "import os\n"
        "assert os.environ['CALLWATCH_LOG_LEVEL'] == 'DEBUG'  # what child processes get\n"
        "logging.getLogger('callwatch.test').debug('in-process debug line')\n"
        f"(tmp_path / 'server.log').write_text('ok\\nreq Authorization: Bearer {TOKEN}\\n"
        f"card {PAN}\\n')\n",
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "1 passed" in out  # the test passed; the scan failed the run
    assert re.search(r"server\.log:2: bearer,test-secret: req Authorization: <bearer>", out), out
    assert re.search(r"server\.log:3: pan: card <pan>", out), out
    assert TOKEN not in out and PAN not in out
    # In-process code logged at DEBUG, through callwatch's formatter, into the session's logs.
    assert "in-process debug line" in (leaky / "bt" / "logs" / "inprocess.log").read_text()

    clean = tmp_path / "clean"
    clean.mkdir()
    run = _run_session(clean, "(tmp_path / 'server.log').write_text('call started\\n')\n")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "logs scanned at DEBUG, nothing found" in run.stdout

    # Under pytest-xdist (as scripts/test runs): a worker's leak fails the whole run.
    xdist = tmp_path / "xdist"
    xdist.mkdir()
    run = _run_session(xdist, f"(tmp_path / 'server.log').write_text('card {PAN}\\n')\n",
                       "-p", "xdist", "-n", "2")  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert re.search(r"popen-gw\d/.*server\.log:1: pan: card <pan>", out), out
