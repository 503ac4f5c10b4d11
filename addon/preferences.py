"""Add-on preferences: where the backend runs (local process or remote server)."""
from __future__ import annotations

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import ADDON_PACKAGE, session
from .backend_link import data_dir_problem, python_problem, url_problem


class OrbitexPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    backend_mode: EnumProperty(
        name="Backend",
        items=[("LOCAL", "Local", "Start the backend on this computer with the Python below"),
               ("REMOTE", "Remote", "Use a backend already running elsewhere (URL and token)")],
        default="LOCAL",
    )
    backend_python: StringProperty(
        name="Backend Python", subtype="FILE_PATH",
        description="The python executable of the backend environment (.venv/backend/bin/python "
                    "from `python build.py setup`); Orbitex runs `python -m backend serve` with it",
    )
    port: IntProperty(name="Port", min=0, max=65535, default=0,
                      description="Port of the local backend; 0 picks a free one")
    data_dir: StringProperty(
        name="Data Folder", subtype="DIR_PATH",
        description="Where the local backend keeps jobs, inputs, results and its token; "
                    "empty: the extension's user folder",
    )
    remote_url: StringProperty(name="URL", description="Address of the remote backend, e.g. http://gpu-box:8000")
    remote_token: StringProperty(name="Token", subtype="PASSWORD",
                                 description="The bearer token from <data>/token on the backend machine")

    def problems(self) -> list[str]:
        """What is wrong with the current settings, in words (empty when they look usable)."""
        if self.backend_mode == "LOCAL":
            found = [python_problem(bpy.path.abspath(self.backend_python))]
            if self.data_dir.strip():
                found.append(data_dir_problem(bpy.path.abspath(self.data_dir)))
        else:
            found = [url_problem(self.remote_url)]
            if not self.remote_token.strip():
                found.append("Token is not set: copy it from <data>/token on the backend machine")
        return [p for p in found if p]

    def draw(self, context) -> None:
        layout = self.layout
        layout.row().prop(self, "backend_mode", expand=True)
        col = layout.column()
        if self.backend_mode == "LOCAL":
            col.prop(self, "backend_python")
            col.prop(self, "port")
            col.prop(self, "data_dir")
            local = session.local_backend()
            row = layout.row()
            if local is not None:
                row.label(text=f"Running at {local.url} (pid {local.process.pid})", icon="CHECKMARK")
                row.operator("orbitex.backend_stop", text="Stop", icon="CANCEL")
            else:
                row.label(text="Not running (starts with the first job)", icon="RADIOBUT_OFF")
                row.operator("orbitex.backend_start", text="Start", icon="PLAY")
        else:
            col.prop(self, "remote_url")
            col.prop(self, "remote_token")
            layout.operator("orbitex.backend_start", text="Check Connection", icon="URL")
        for problem in self.problems():
            row = layout.row()
            row.alert = True
            row.label(text=problem, icon="ERROR")
