"""``society run``: one machine, one command, a whole society as separate OS processes."""
