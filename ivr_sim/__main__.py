"""`python -m ivr_sim`: the simulated switch (see `ivr_sim.cli`)."""

import sys

from ivr_sim.cli import main

sys.exit(main())
