"""Privacy and PCI: what callwatch masks before anything is stored, published or exported.

- `spoken`: spoken numbers in English and Mandarin transcripts, as digits with their spans;
- `detect`: which of them are card numbers, codes, expiry dates, IDs, accounts, phones, e-mails;
- `redactor`: per call, segments in and masked segments out, held back across segments;
- `scrub`: DTMF key presses and switch metadata / trace payloads.

All sans-I/O; `monitor.runtime.call.LiveCall` applies them (docs/privacy.md).
"""
