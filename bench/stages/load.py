"""Stage 5: loading the cache into PostgreSQL, against raw binary COPY and `to_sql`.

On a throwaway PostgreSQL server (`tests.postgres_server`), a fresh database per
repetition, the product (`pipeline.load.load_datasets`, a new table in parallel COPY
streams) does three loads of the scenario's dataset: the initial load of the cache of
day D; the re-load after one simulated day (only the partitions the day's sync rewrote);
and an upsert of one partition in which 10% of the rows changed. The references, in
databases of their own with the same keyed table (the sink's DDL; the COPY references'
initial step also builds the sink's one-stock history index after its COPY, timed, so
that they end with the same table as the load): the floor, raw binary
COPY of the same rows in key order, one COPY per step, encoded ahead of time so that
only the COPY itself is timed (`bench.stages.pg_copy`; for the second and third step
with the DELETE of the partition's rows that replacing it needs); the user's
alternative, psycopg COPY straight from the Parquet files (read, encode, COPY, all
timed); and `pandas.DataFrame.to_sql` on a subset of rows, extrapolated to all of them
(into the keyed table without the history index: the cheaper side for to_sql).
Throughput ratios: reference seconds / load seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from bench.child import in_child
from bench.context import StageContext
from bench.figures import Figure, StageResult, Target, median, ratio
from bench.workdir import clone_cache

TITLE = "loading into PostgreSQL, against raw binary COPY and to_sql"
NEEDS_DATA = True
COPY_TARGET = 0.8
UPSERT_TARGET = 0.5
E2E_TARGET = 1.0  # initial load at least as fast as the user's psycopg COPY from Parquet
TO_SQL_TARGET = 20.0
CHANGED_SHARE = 10  # every 10th row of the partition changes


@dataclass(frozen=True)
class LoadJob:
    """The three caches to load in order, the dataset, the server and the repetitions."""

    caches: tuple[Path, Path, Path]
    dataset: str
    server_url: str
    reps: int
    changed: tuple[str, ...]  # partitions (relative paths) the second load finds changed
    upserted: str  # the partition of the third load
    to_sql_rows: int
    scratch: Path  # where the reference keeps its encoded COPY streams
    server_pid: int | None  # the server's postmaster, when these tests started it


def server_cpu_s(job: LoadJob) -> float:
    """CPU seconds the database server has used so far (0 for a server not started
    here): two readings around a load give the server's share of its work."""
    from bench.child import tree_cpu_s

    return 0.0 if job.server_pid is None else tree_cpu_s(job.server_pid)


def changed_partitions(before: Path, after: Path) -> list[str]:
    """Files of `after` that are new or differ (size, mtime) from those of `before`."""
    found = []
    for path in sorted(after.rglob("*.parquet")):
        old = before / path.relative_to(after)
        new_stat = path.stat()
        if not old.exists() or (old.stat().st_size, old.stat().st_mtime_ns) != (
            new_stat.st_size,
            new_stat.st_mtime_ns,
        ):
            found.append(path.relative_to(after).as_posix())
    return found


def changed_rows(path: Path, key: tuple[str, ...]) -> int:
    """Rewrite one partition file with every 10th row's float values changed (a new
    file: hard links to the old one keep it); the rows that now differ."""
    from cache.atomic import write_parquet_atomic

    frame = pl.read_parquet(path)
    values = [
        name for name, dtype in frame.schema.items() if dtype == pl.Float64 and name not in key
    ]
    chosen = pl.int_range(pl.len()) % CHANGED_SHARE == 0
    changed = frame.with_columns(
        [
            pl.when(chosen).then(pl.col(c) * 1.01 + 0.01).otherwise(pl.col(c)).alias(c)
            for c in values
        ]
    )
    write_parquet_atomic(changed, path)
    differs = pl.any_horizontal([frame[c].ne_missing(changed[c]) for c in values])
    return int(frame.select(differs.sum()).item())


def _database(server_url: str, name: str) -> str:
    """Create database `name` (dropped first if it exists); its URL."""
    import psycopg

    from sinks.postgres import with_database

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


def _drop(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fingerprint(url: str, table: str) -> list[str]:
    """Row count and the sum of a hash of every row's text: equal for equal tables."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*), sum(hashtext(t::text)::bigint) FROM {table} t")
        found = row.fetchone()
    return [str(v) for v in found] if found else []


def load_product(job: LoadJob) -> dict[str, Any]:
    """In the child: initial, changed-partition and upsert loads, `reps` times."""
    from cache.layout import CacheLayout
    from pipeline.load import load_datasets

    timings: dict[str, list[float]] = {"initial": [], "partition": [], "upsert": []}
    cpu: dict[str, list[float]] = {"client": [], "server": []}  # of the initial load
    counts: dict[str, Any] = {}
    fingerprint: list[str] = []
    for rep in range(job.reps):
        url = _database(job.server_url, f"bench_product_{rep}")
        for (label, seconds), cache in zip(timings.items(), job.caches, strict=True):
            started, client, server = time.perf_counter(), time.process_time(), server_cpu_s(job)
            done = load_datasets(CacheLayout(cache), url, [job.dataset])
            seconds.append(time.perf_counter() - started)
            if label == "initial":
                cpu["client"].append(time.process_time() - client)
                cpu["server"].append(server_cpu_s(job) - server)
            table = done.tables[0]
            counts[label] = {
                "partitions_loaded": table.loaded,
                "inserted": table.inserted,
                "updated": table.updated,
            }
        fingerprint = _fingerprint(url, _sql_name(job.dataset))
        _drop(job.server_url, f"bench_product_{rep}")
    return {"seconds": timings, "cpu": cpu, "counts": counts, "fingerprint": fingerprint}


def _sql_name(dataset: str) -> str:
    layer, name = dataset.split(".", 1)
    return f'"{layer}"."{name}"'


def _files(cache: Path, dataset: str, partitions: tuple[str, ...] | None) -> list[Path]:
    base = cache.joinpath(*dataset.split(".", 1))
    if partitions is None:
        return sorted(base.rglob("*.parquet"))
    return [base / p for p in partitions]


def _read_sorted(path: Path, key: tuple[str, ...]) -> Any:
    """One partition file's rows as an Arrow table in key order (what COPY is fed)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).sort_by([(k, "ascending") for k in key])


def _first_rows(files: list[Path], key: tuple[str, ...], wanted: int) -> Any:
    """The first `wanted` rows in key order of files that hold ascending key ranges."""
    import pyarrow as pa

    tables, held = [], 0
    for path in files:
        if held >= wanted:
            break
        tables.append(_read_sorted(path, key))
        held += tables[-1].num_rows
    return pa.concat_tables(tables).slice(0, wanted)


def _history_index(cur: Any, dataset: str, columns: list[str]) -> None:
    """Build the sink's one-stock history index, which the sink's table carries besides
    its key: a reference's initial step builds it after its COPY (the cheap way, as the
    sink does), so every reference ends with the same table as the load."""
    from sinks.ddl import history_index_sql, table_spec

    sql = history_index_sql(table_spec(*dataset.split(".", 1)), columns)
    if sql:
        cur.execute(sql)


def _create_table(cur: Any, dataset: str, files: list[Path]) -> None:
    """Create the sink's keyed table for the dataset (with the sink's own DDL)."""
    import pyarrow.parquet as pq

    from sinks.ddl import create_table_sql, pg_type, table_spec

    layer, name = dataset.split(".", 1)
    spec = table_spec(layer, name)
    schema = pq.read_schema(files[0])
    columns = [(f.name, pg_type(f.type, f.name)) for f in schema]
    cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
    for sql in create_table_sql(spec, [(n, t) for n, t in columns if t is not None]):
        cur.execute(sql)


def _lead_values(path: Path, lead: str) -> list[Any]:
    """The lead key values a partition file holds (what its reload deletes first)."""
    import pyarrow.parquet as pq

    return list(pq.read_table(path, columns=[lead]).column(lead).unique().to_pylist())


def _delete_partition(cur: Any, table: str, lead: str, values: list[Any]) -> None:
    """Delete the rows of the partition's lead key values: what replacing a partition
    costs besides its COPY (timed with it)."""
    cur.execute(f'DELETE FROM {table} WHERE "{lead}" = ANY(%s)', (values,))


def _copy_parquet(cur: Any, table: str, columns: list[str], files: list[Path]) -> int:
    """The user's end-to-end alternative: each Parquet file read (pyarrow), encoded as
    COPY BINARY (the same numpy encoder as the floor) and streamed by psycopg, in one
    COPY; rows copied."""
    import pyarrow.parquet as pq

    from bench.stages.pg_copy import SIGNATURE, TRAILER, encode

    names = ", ".join('"' + name.replace('"', '""') + '"' for name in columns)
    rows = 0
    with cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(SIGNATURE)
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(columns=columns):
                copy.write(encode(batch))
                rows += batch.num_rows
        copy.write(TRAILER)
    return rows


def load_reference(job: LoadJob) -> dict[str, Any]:
    """In the child: raw binary COPY of the same rows, `reps` times, and `to_sql`.

    Each step's rows are read, sorted by the key and encoded into a COPY file first
    (not timed); the timed part is the COPY of that file into the keyed table.
    """
    import psycopg
    import pyarrow.parquet as pq
    import sqlalchemy

    from bench.stages.pg_copy import copy_file, write_copy_file
    from sinks.ddl import table_spec

    table = _sql_name(job.dataset)
    key = table_spec(*job.dataset.split(".", 1)).data_key
    all_files = _files(job.caches[0], job.dataset, None)
    columns = pq.read_schema(all_files[0]).names
    steps = (
        ("initial", all_files),
        ("partition", _files(job.caches[1], job.dataset, job.changed)),
        ("upsert", _files(job.caches[2], job.dataset, (job.upserted,))),
    )
    streams = {label: job.scratch / f"{label}.copy" for label, _ in steps}
    rows_copied = {
        label: write_copy_file((_read_sorted(path, key) for path in files), streams[label])
        for label, files in steps
    }
    leads = {label: [_lead_values(path, key[0]) for path in files] for label, files in steps}
    timings: dict[str, list[float]] = {label: [] for label, _ in steps}
    floor_server_cpu: list[float] = []  # of the initial step
    e2e: dict[str, list[float]] = {label: [] for label, _ in steps}
    fingerprint: list[str] = []
    e2e_fingerprint: list[str] = []
    for rep in range(job.reps):
        url = _database(job.server_url, f"bench_copy_{rep}")
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            _create_table(cur, job.dataset, all_files)
            for label, _files_of_step in steps:
                started, server = time.perf_counter(), server_cpu_s(job)
                if label != "initial":
                    for values in leads[label]:
                        _delete_partition(cur, table, key[0], values)
                copy_file(cur, table, columns, streams[label])
                if label == "initial":
                    _history_index(cur, job.dataset, columns)
                    floor_server_cpu.append(server_cpu_s(job) - server)
                timings[label].append(time.perf_counter() - started)
        fingerprint = _fingerprint(url, table)
        _drop(job.server_url, f"bench_copy_{rep}")
        url = _database(job.server_url, f"bench_e2e_{rep}")
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            _create_table(cur, job.dataset, all_files)
            for label, files in steps:
                started = time.perf_counter()
                if label != "initial":
                    for path in files:
                        _delete_partition(cur, table, key[0], _lead_values(path, key[0]))
                _copy_parquet(cur, table, columns, files)
                if label == "initial":
                    _history_index(cur, job.dataset, columns)
                e2e[label].append(time.perf_counter() - started)
        e2e_fingerprint = _fingerprint(url, table)
        _drop(job.server_url, f"bench_e2e_{rep}")
    for stream in streams.values():
        stream.unlink()
    url = _database(job.server_url, "bench_to_sql")
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        _create_table(cur, job.dataset, all_files)
    frame = _first_rows(all_files, key, job.to_sql_rows).to_pandas()
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    layer, name = job.dataset.split(".", 1)
    started = time.perf_counter()
    frame.to_sql(name, engine, schema=layer, if_exists="append", index=False)
    to_sql_s = time.perf_counter() - started
    engine.dispose()
    _drop(job.server_url, "bench_to_sql")
    return {
        "seconds": timings,
        "floor_server_cpu": floor_server_cpu,
        "e2e_seconds": e2e,
        "rows": rows_copied,
        "fingerprint": fingerprint,
        "e2e_fingerprint": e2e_fingerprint,
        "to_sql_s": to_sql_s,
        "to_sql_rows": len(frame),
    }


def _postmaster_pid(data: Path | None) -> int | None:
    """The server's main process, from its data folder's postmaster.pid (None for a
    server these tests did not start, or one whose file cannot be read)."""
    try:
        return None if data is None else int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpu_figures(load: dict[str, list[float]], floor_server: list[float]) -> list[Figure]:
    """The initial load's CPU seconds (client and server) and the floor's server CPU,
    each with the least wall time it allows on this machine's cores; none when the
    server's CPU could not be read."""
    if not floor_server or not any(load["server"]):
        return []
    cpus = os.cpu_count() or 1
    client, server, floor = median(load["client"]), median(load["server"]), median(floor_server)
    return [
        Figure(
            "initial load: CPU, client + server",
            round(client + server, 1),
            "s",
            detail=f"client {client:.1f} s + server {server:.1f} s; "
            f"on {cpus} CPU(s) no less than {(client + server) / cpus:.1f} s of wall",
        ),
        Figure(
            "initial: raw COPY, server CPU",
            round(floor, 1),
            "s",
            detail=f"on {cpus} CPU(s) no less than {floor / cpus:.1f} s of wall",
        ),
    ]


def run(ctx: StageContext) -> StageResult:
    """Start a throwaway server, run both children, compare."""
    from sinks.ddl import table_spec
    from sinks.postgres_sink import load_streams
    from tests.postgres_server import throwaway_server

    streams = load_streams(None)
    data = ctx.data()
    scenario = ctx.scenario
    dataset = scenario.load_dataset
    result = StageResult("load", TITLE)
    layer, name = dataset.split(".", 1)
    changed = changed_partitions(data.base / layer / name, data.next / layer / name)
    if not changed:
        msg = f"the sync of {data.next_day} changed no partition of {dataset}"
        raise RuntimeError(msg)
    upsert_cache = clone_cache(data.next, ctx.scratch / "upsert")
    upserted = changed[-1]
    key = table_spec(layer, name).data_key
    rows_changed = changed_rows(upsert_cache / layer / name / upserted, key)
    with throwaway_server() as server:
        job = LoadJob(
            (data.base, data.next, upsert_cache),
            dataset,
            server.url,
            ctx.reps,
            tuple(changed),
            upserted,
            scenario.to_sql_rows,
            ctx.scratch,
            _postmaster_pid(server.data),
        )
        product = in_child(load_product, job)
        reference = in_child(load_reference, job)
    mine, ref = product.value, reference.value
    result.add_timings({f"load_{k}": v for k, v in mine["seconds"].items()})
    result.add_timings({f"copy_{k}": v for k, v in ref["seconds"].items()})
    result.add_timings({f"e2e_{k}": v for k, v in ref["e2e_seconds"].items()})
    result.peak_rss_mb = {"load": product.peak_rss_mb, "references": reference.peak_rss_mb}
    load_s = {k: median(v) for k, v in mine["seconds"].items()}
    copy_s = {k: median(v) for k, v in ref["seconds"].items()}
    e2e_s = {k: median(v) for k, v in ref["e2e_seconds"].items()}
    total_rows = ref["rows"]["initial"]
    to_sql_all = ref["to_sql_s"] * total_rows / ref["to_sql_rows"]
    described = {
        "initial": f"{total_rows:,} rows",
        "partition": f"{len(changed)} partition(s), {ref['rows']['partition']:,} rows",
        "upsert": f"{rows_changed:,} of {ref['rows']['upsert']:,} rows changed",
    }
    targets = {"initial": COPY_TARGET, "partition": COPY_TARGET, "upsert": UPSERT_TARGET}
    floor = {"initial": "raw COPY", "partition": "DELETE + raw COPY", "upsert": "DELETE + raw COPY"}
    for label, bound in targets.items():
        result.figures += [
            Figure(f"{label} load", round(load_s[label], 3), "s", detail=described[label]),
            Figure(f"{label}: {floor[label]}", round(copy_s[label], 3), "s"),
            Figure(
                f"{label}: throughput / {floor[label]}",
                ratio(copy_s[label], load_s[label]),
                "x",
                Target(">=", bound),
            ),
            Figure(f"{label}: psycopg COPY from Parquet", round(e2e_s[label], 3), "s"),
            Figure(
                f"{label}: throughput / psycopg COPY from Parquet",
                ratio(e2e_s[label], load_s[label]),
                "x",
                Target(">=", E2E_TARGET) if label == "initial" else None,
            ),
        ]
    result.figures += [
        Figure(
            "to_sql, extrapolated",
            round(to_sql_all, 1),
            "s",
            detail=f"{ref['to_sql_rows']:,} rows in {ref['to_sql_s']:.2f} s",
        ),
        Figure(
            "initial load speed / to_sql",
            ratio(to_sql_all, load_s["initial"]),
            "x",
            Target(">=", TO_SQL_TARGET),
        ),
        Figure(
            "raw COPY floor speed / to_sql",
            ratio(to_sql_all, copy_s["initial"]),
            "x",
            detail="what a load as fast as the floor would show",
        ),
        *_cpu_figures(mine["cpu"], ref["floor_server_cpu"]),
        Figure(
            "same table as raw COPY",
            float(mine["fingerprint"] == ref["fingerprint"] == ref["e2e_fingerprint"]),
            "",
            Target("==", 1.0),
            "row count and row-hash sum after the three steps (product, floor, psycopg)",
        ),
    ]
    result.add_rss_figure("load")
    result.facts = {
        "dataset": dataset,
        "changed_partitions": changed,
        "upserted_partition": upserted,
        "load_counts": mine["counts"],
        "fingerprint": mine["fingerprint"],
    }
    result.notes = [
        f"Dataset `{dataset}`, key {', '.join(key)}; product: `load_datasets(layout, url, "
        f"['{dataset}'])` on the cache of {data.day}, then on the cache one simulated day "
        f"later ({data.next_day}: the sync rewrote {', '.join(changed)}), then on a "
        f"copy of that with every {CHANGED_SHARE}th row of {upserted} changed "
        "(float values × 1.01 + 0.01); a new database per repetition.",
        f"The product's initial load ran {streams} COPY stream(s) (`[database] "
        "load_streams`, default CPUs / 2, 1 to 4): one stream loads a new table in one "
        "transaction; several run in parallel on as many connections into a staging table "
        "that one transaction then renames into place and keys. The references below are "
        "each one stream.",
        "Raw COPY (the floor): the same files read, sorted by the key and encoded as one "
        "COPY BINARY stream beforehand (numpy, not timed); timed: psycopg streaming it "
        "by `COPY … FROM STDIN (FORMAT BINARY)` into the same keyed table (the sink's "
        "DDL), then, for the initial step, the sink's one-stock history index built "
        "after the COPY (timed: the load's table has it too). For the partition and "
        "the upsert, the DELETE of the partition's rows (by "
        "its lead key values, known beforehand) is timed with the COPY: replacing a "
        "partition costs both. Throughput ratio = reference seconds / load seconds, so "
        "the load's reading, checking and merging all count against it.",
        "psycopg COPY from Parquet (the user's alternative, end to end): each file read "
        "with pyarrow, encoded by the same numpy COPY BINARY encoder and streamed by "
        "psycopg, one COPY per step into the same keyed table (for the partition and the "
        "upsert after the DELETE of the partition's lead key values, read from the file), "
        "the history index built after the initial COPY; all of it timed.",
        f"to_sql: `DataFrame.to_sql(if_exists='append')` (SQLAlchemy + psycopg) of the "
        f"first {ref['to_sql_rows']:,} rows in key order into the same keyed table "
        "(without the history index, the cheaper side for to_sql), extrapolated linearly "
        "to all rows. The floor's own speed over to_sql is shown beside it: a load "
        "matching the floor on this machine shows that ratio, and exceeding it means "
        "building the same keyed, indexed table faster than one raw COPY into it does.",
        "CPU: the initial load's own process (`time.process_time`, its reader and COPY "
        "threads) and the server's process tree (postmaster, backends, parallel index "
        "workers, background writers: /proc CPU times before and after, reaped processes "
        "included), median of the repetitions; the floor's is the server's alone (its "
        "rows were encoded beforehand). CPU seconds over the machine's cores bound the wall "
        "time from below, whatever the loader does with them.",
    ]
    return result
