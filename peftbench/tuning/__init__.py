"""peftbench-tune's parts below the apps: search spaces (:mod:`.space`), the Optuna study and a trial run's
reporter (:mod:`.study`), and the export of selected settings as a recipe (:mod:`.export`)."""
