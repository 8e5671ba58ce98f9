"""Jobs: stylizations that outlive the HTTP request that started them (issue 12).

TorchServe-free and HTTP-free. :mod:`.store` keeps every job's state, progress and result where
every worker of the machine can read and change it (SQLite in WAL mode), so that a result
survives a client's reconnect and a worker restart, and a cancel reaches the worker running
the job.
"""
