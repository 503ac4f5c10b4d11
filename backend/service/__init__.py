"""The Orbitex job service: `python -m backend serve`.

layout.py (data folder), store.py (SQLite job records), registry.py (job types),
uploads.py (streaming multipart), auth.py (token), app.py (HTTP API), supervisor.py (the worker
process's keeper), worker.py (runs jobs), server.py (command line entry).
"""
