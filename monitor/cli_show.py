"""What `callwatch show` prints about a stored call's analysis, as text or as JSON.

The text shows the grade with its scorecard (every deduction, every cap that held the grade
down), audio quality per party, conversation flow, the compliance checklist (optional stages
not said are "not said", not failures), findings and, on request, the readings. The JSON
carries the same documents as the API's call detail (`CallAnalysis.document`).
"""

from __future__ import annotations

from typing import Any


def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "--:--.-"
    s = ms / 1000
    return f"{int(s // 60):02d}:{s % 60:04.1f}"


def _num(value: Any, fmt: str = ".1f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


_CAP_REASONS = {
    "compliance_failed": "compliance below the script's pass score",
    "critical": "critical failure",
    "missed_required": "required stage missed",
    "forbidden": "forbidden phrase said",
}


def _show_scorecard(card: dict[str, Any] | None) -> None:
    """Why the score and the grade: every deduction, every cap."""
    if not card:
        return
    if "no_agent_leg" in card.get("notes", ()):
        print("  note      the agent's audio was not streamed: the agent's script was not checked")
    w = card["quality_weight"]
    print(f"  why       call score = {w:g} x quality + {1 - w:g} x compliance")
    for line in card["lines"]:
        what = line["item"] + (f" ({line['party']})" if line.get("party") else "")
        if line["source"] == "quality" and line.get("value") is not None:
            what += f" {line['value']:.4g} {line['unit']} vs {line['threshold']:g}"
        print(
            f"    -{line['points']:5.1f} {line['source']:10} {line['kind']:15} {what}"
            f"  (-{line['call_points']:.1f} on the call score)"
        )
    for cap in card["caps"]:
        print(
            f"    capped at {cap['grade']}: {_CAP_REASONS.get(cap['reason'], cap['reason'])} "
            f"({', '.join(cap['items'])})"
        )


def show_analysis(analysis: Any, call: Any, readings: bool) -> None:
    """Scores, per-party quality, conversation flow, compliance checklist and findings."""
    if call.grade is not None:
        print(
            f"\ngrade       {call.grade} (score {_num(call.score)}: quality "
            f"{_num(call.quality_score)}, compliance {_num(call.compliance_score)})"
        )
        _show_scorecard(analysis.result("scorecard"))
    parties = analysis.results.get("quality_party", {})
    if parties:
        print("\naudio quality")
    for party, q in sorted(parties.items()):
        print(
            f"  {party:8} speech {_num(q.get('speech_level_dbov'), unit=' dBov')}, noise "
            f"{_num(q.get('noise_level_dbov'), unit=' dBov')}, "
            f"SNR {_num(q.get('snr_db'), unit=' dB')}"
            f", DNSMOS SIG/BAK/OVRL {_num(q.get('dnsmos_sig_mean'), '.2f')}/"
            f"{_num(q.get('dnsmos_bak_mean'), '.2f')}/{_num(q.get('dnsmos_ovrl_mean'), '.2f')}"
            f" ({q.get('codec')} {q.get('sample_rate_hz')} Hz), clipping "
            f"{_num(100 * (q.get('clip_ratio') or 0), '.2f', ' %')}, dropouts {q.get('dropouts')}"
        )
    conv = analysis.result("conversation")
    if conv and conv.get("absent"):
        # A party not streamed: its talk and everything between the parties is n/a.
        for party in conv["absent"]:
            conv[f"{party}_talk_ms"] = None
        print(f"  absent    {', '.join(conv['absent'])} (not streamed: n/a)")
    if conv:
        print(
            f"  talk      agent {fmt_ms(conv['agent_talk_ms'])}, customer "
            f"{fmt_ms(conv['customer_talk_ms'])}, "
            f"agent ratio {_num(conv['agent_talk_ratio'], '.2f')}"
            f", non-talk {fmt_ms(conv['non_talk_ms'])}"
        )
    if conv and not conv.get("absent"):  # between the parties: n/a with one of them absent
        print(
            f"  flow      dead air {conv['dead_air_count']} ({fmt_ms(conv['dead_air_total_ms'])})"
            f", overtalk {conv['overtalk_count']} ({fmt_ms(conv['overtalk_total_ms'])}), "
            f"response gap mean {_num(conv['response_gap_mean_ms'], '.0f', ' ms')} max "
            f"{_num(conv['response_gap_max_ms'], 'd', ' ms')}, first response "
            f"{_num(conv['first_response_ms'], 'd', ' ms')}"
        )
    comp = analysis.result("compliance")
    if comp:
        print(
            f"\ncompliance  script {comp['script']}: score {_num(comp['score'])}, "
            f"{'passed' if comp['passed'] else 'FAILED'}"
        )
        for st in comp["stages"]:
            status = st["status"]
            if not st.get("required", True) and status in ("missed", "outside_window"):
                status = "not said"  # optional: no failure, no deduction
            mark = {"passed": "+", "suspended": "~", "not said": "."}.get(status, "x")
            where = (
                f"[{fmt_ms(st['start_ms'])}] {st['matched_text']!r}"
                if st["start_ms"] is not None
                else st["window"]
            )
            print(f"  {mark} {st['stage']:14} {status:16} {where}")
        for f in comp["forbidden"]:
            print(f"  ! forbidden {f['rule']:10} [{fmt_ms(f['start_ms'])}] {f['matched_text']!r}")
    if analysis.findings:
        print("\nfindings")
    for f in analysis.findings:
        print(
            f"  [{fmt_ms(f.start_ms)}-{fmt_ms(f.end_ms)}] {f.source:12} {f.kind:16} "
            f"{f.severity or '':8} {f.party or ''}"
        )
    if readings and analysis.readings:
        print("\nquality readings (every 2 s)")
        for r in analysis.readings:
            v = r.values
            print(
                f"  [{fmt_ms(r.start_ms)}-{fmt_ms(r.end_ms)}] {r.party:8} speech "
                f"{_num(v.get('speech_level_dbov'))} noise {_num(v.get('noise_level_dbov'))} "
                f"SNR {_num(v.get('snr_db'))} clip {v.get('clipped_samples')}"
            )
