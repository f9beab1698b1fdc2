"""python -m scenario_uni1: the scenario-uni1 command."""

from scenario_uni1.cli import main

raise SystemExit(main())
