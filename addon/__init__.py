"""Orbitex's Blender side: registration, preferences, the backend link, jobs and scene I/O.

Only `registration`, `preferences`, `session` and `scene_io` import bpy; `client`, `backend_link`
and `jobs` are plain Python so tests drive them without Blender's event loop.
"""

# The extension's package name: "orbitex" in tests, "bl_ext.<repo>.orbitex" when installed.
ADDON_PACKAGE: str = __package__.rpartition(".")[0]
