"""The sans-I/O core of a live call: metadata, per-party segmentation, the call session.

No sockets, tasks or clocks here: plain classes that take input and return events, so they
can be fuzzed, replayed from a stored call and reused by `ivr_sim`.
"""
