"""python -m scenario_uni1.emulator: run an emulator in the foreground."""

from scenario_uni1.emulator import main

if __name__ == "__main__":
    raise SystemExit(main())
