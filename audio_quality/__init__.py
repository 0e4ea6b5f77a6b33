"""Pure DSP on numpy arrays and small streaming trackers (units in names).

Per party: `party.PartyQualityTracker` (levels, noise, blind SNR, clipping, dropouts, metric
VAD via `activity`, DNSMOS windows) → `records.QualityReading` every reading interval and a
`records.PartyQualitySummary` at the end; `dnsmos.DnsmosScorer` scores windows batched across
parties and calls. Across parties: `conversation.ConversationTracker` (talk time, dead air,
overtalk, response gaps, speaking rate). Judgement: `assessment.assess` (findings, score,
grade). Settings: `settings.QualitySettings`. Building blocks: `levels` (P.56, dBov, codec
full scale, clipping), `snr`, `g711`, `impair` (known impairments for validation),
`resample`.
"""
