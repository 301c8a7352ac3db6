"""``python -m agents`` is the ``society`` command."""

from agents.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
