"""The applications behind the console scripts, each on the run spine (:mod:`peftbench.assemble`):
train (``peftbench-train``), params, bench, tune, search and the embedded mini-benchmark. The leaderboard
app reads records only (:mod:`peftbench.results`)."""
