"""How Airflow's components connect to a SQLite metadata database on the local stack (no imports: Airflow loads
this while it configures itself, through ``[database] sql_alchemy_connect_args``).

Python's sqlite3 gives up on a locked database after 5 s; Airflow's scheduler then exits ("database is locked",
on ``UPDATE dag_run``). With three models' DAGs, their deferred sensors and task processes writing through the
API server, a write waited longer than that and the scheduler died mid-demo. Waiting up to 60 s for the lock
keeps every component up; WAL (which Airflow turns on) keeps readers out of the writers' way.
"""

#: Keyword arguments of ``sqlite3.connect`` (and aiosqlite's, which passes them on).
CONNECT_ARGS = {"timeout": 60.0}
