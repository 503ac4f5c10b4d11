"""The Orbitex job service: `python -m backend serve`.

layout.py (data folder), store.py (SQLite job records), registry.py (job types),
uploads.py (streaming multipart), auth.py (token), app.py (HTTP API), supervisor.py (the worker
process's keeper), worker.py (runs jobs), ray_engine.py (the Ray engine: jobs as Ray tasks),
server.py (command line entry), batch.py (`python -m backend batch`, a client of the service).
"""
