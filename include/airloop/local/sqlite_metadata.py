"""How Airflow's components connect to a SQLite metadata database on the local stack (no imports: Airflow loads
this while it configures itself, through ``[database] sql_alchemy_connect_args``).

Python's sqlite3 gives up on a locked database after 5 s; Airflow's scheduler then exits ("database is locked",
on ``UPDATE dag_run``). With three models' DAGs, their deferred sensors and task processes writing through the
API server, a write waited longer than that and the scheduler died mid-demo. Waiting up to 60 s for the lock
keeps every component up; WAL (which Airflow turns on) keeps readers out of the writers' way.

Except in the API server. Airflow 3.3's action log writes to the database from the server's event loop while a
request thread of the same process holds the write lock and waits for that loop: the two wait on each other until
the event loop's wait for the lock gives up. With 60 s, the whole stack stood still for 60 s (every component's
heartbeat and the task writes queued behind that lock; seen in a year's demo, where the scheduler then reset a
training task that had finished meanwhile). The API server gives up after :data:`API_SERVER_TIMEOUT` instead: in
that deadlock the action log entry is lost and the request goes on. Any other write through the API server that
waits longer than that for the lock also fails (a 500): task processes' calls are retried by the Task SDK's
client, the demo's REST calls by its own. The scheduler, DAG processor and triggerer keep waiting up to 60 s.
"""

#: Keyword arguments of ``sqlite3.connect`` (and aiosqlite's, which passes them on).
CONNECT_ARGS = {"timeout": 60.0}
#: How long the API server waits for the write lock (sqlite3's default): its self-deadlock ends after this.
API_SERVER_TIMEOUT = 5.0
#: The API server's ``sqlite3.connect`` arguments.
API_SERVER_CONNECT_ARGS = {"timeout": API_SERVER_TIMEOUT}
