"""The throwaway PostgreSQL server really runs and takes connections."""

import adbc_driver_postgresql.dbapi as pgdb


def test_fixture_server_answers(pg_url: str) -> None:
    with pgdb.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("select current_database(), version()")
        db, version = cur.fetchone()
    assert db.startswith("t_")
    assert "PostgreSQL" in version
