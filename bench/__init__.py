"""Gongkai's benchmark suite: each scenario measured against a raw baseline in one run.

    python3 dev.py bench                      # full size, writes BENCHMARKS.md
    python3 dev.py bench --size smoke         # the small size CI runs (under a minute)
    .venv/bin/python -m bench --only single_posts,bulk_ingest --out /tmp/b.md

A run creates a fresh database ``gongkai_bench_<random>`` on the server of
``DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``),
migrates it, starts ``gongkai serve`` (and, for single posts, the bare baseline
app of ``bench.baseline_app``) as subprocesses, runs the scenarios, drops the
database and writes a markdown report. Modules:

- ``cli``: the command line and the run;
- ``context``: sizes, the run's database, servers and shared state;
- ``ingest``, ``reads``, ``archives``: the scenarios, one function each returning a dict;
- ``workload``: the entry mix, the in-process loader, the baseline's rows;
- ``wrk`` and ``lua/``: wrk and its scripts; ``infra``: processes and the machine;
- ``profile``: optional py-spy sampling (``--profile``); ``report``: the markdown.
"""
