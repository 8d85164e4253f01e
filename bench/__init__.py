"""The benchmark harness behind `make bench` and `make bench-full` (issue 9).

Every stage of the pipeline is measured side by side with the usual way of doing the
same work, or with the physical limit of the mechanism underneath, in the same run:
figures on shared machines drift, so targets are ratios or wide bounds. Each measured
piece runs in its own spawned child process (its peak memory is its own), repeated,
and reported as the median. `python -m bench --scenario small` prints one table and
writes it as JSON and Markdown under `bench/results/`.
"""
