"""Pure DSP on numpy arrays and small streaming trackers (units in names)."""
