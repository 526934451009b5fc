"""Benchmarks of camo-engine.  Installed as ``camo_engine.benchmarks`` with only the HCMUS 2020
reference loop (:mod:`camo_engine.benchmarks.reference_hcmus`, what ``camo-engine bench
--compare`` measures against); the ``bench_*.py`` scripts run from a source checkout."""
