"""Start/check and stop the backend from the preferences or the sidebar."""
from __future__ import annotations

import bpy

from ..addon import session
from ..addon.client import BackendError


class ORBITEX_OT_backend_start(bpy.types.Operator):
    bl_idname = "orbitex.backend_start"
    bl_label = "Start / Check Backend"
    bl_description = "Start the local backend, or check that the remote one answers"

    def invoke(self, context, event):
        """From the UI: start or check on a worker thread; the Backend panel shows the outcome."""
        try:
            session.start_in_background()
        except BackendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}

    def execute(self, context):
        """Scripts, background mode, tests: start or check and wait for the answer."""
        try:
            client = session.connect()
        except BackendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Orbitex backend ready at {client.base_url}")
        return {"FINISHED"}


class ORBITEX_OT_backend_stop(bpy.types.Operator):
    bl_idname = "orbitex.backend_stop"
    bl_label = "Stop Local Backend"
    bl_description = "Stop the local backend process this add-on started (its running job is interrupted)"

    @classmethod
    def poll(cls, context):
        return session.local_backend() is not None

    def execute(self, context):
        session.stop_local_backend()
        return {"FINISHED"}
