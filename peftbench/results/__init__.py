"""Run results (one JSON per run) and the leaderboards derived from them."""
