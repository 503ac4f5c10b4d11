"""Sidebar sections for painting the artist's own objects: Backend status, Texture, Bake from
Cameras, Batch. Options live in Scene.orbitex_texturing and are passed to the operators as is."""
from __future__ import annotations

import bpy

from ..addon import session
from ..addon.backend_link import url_problem
from ..addon.client import BackendClient, BackendError
from ..operators.bake_from_cameras import BakeOptions
from ..operators.batch_collection import batches
from ..operators.texture_selected import TextureOptions
from .jobs import _OrbitexSidebar, _wrapped_labels
from .settings import SCENE_PROPERTY, copy_options

def settings(context):  # type: ignore[no-untyped-def]
    return getattr(context.scene, SCENE_PROPERTY)


class ORBITEX_PT_backend(_OrbitexSidebar, bpy.types.Panel):
    bl_idname = "ORBITEX_PT_backend"
    bl_label = "Backend"

    def draw(self, context):
        layout = self.layout
        try:
            prefs = session.preferences()
        except BackendError as exc:
            layout.label(text=str(exc), icon="ERROR")
            return
        width = context.region.width if context.region else 300
        status = session.status
        if prefs.backend_mode == "LOCAL":
            local = session.local_backend()
            row = layout.row()
            if local is not None:
                row.label(text=f"Local: running (pid {local.process.pid})", icon="CHECKMARK")
                row.operator("orbitex.backend_start", text="", icon="FILE_REFRESH")
                row.operator("orbitex.backend_stop", text="Stop", icon="CANCEL")
                layout.label(text=local.url, icon="BLANK1")
            elif session.starting():
                row.label(text="Local: starting…", icon="TIME")
            else:
                row.label(text="Local: stopped", icon="RADIOBUT_OFF")
                row.operator("orbitex.backend_start", text="Start", icon="PLAY")
                if status.reachable is False:
                    col = layout.column(align=True)
                    col.alert = True
                    _wrapped_labels(col, status.detail, width - 40)
        else:
            url = prefs.remote_url.strip()
            problem = url_problem(url)
            row = layout.row()
            if problem:
                row.alert = True
                row.label(text="Remote: not set up", icon="ERROR")
                _wrapped_labels(layout.column(), problem, width - 40)
            elif not bpy.app.online_access and not session.is_loopback(url):  # "Allow Online Access" is off
                row.alert = True
                row.label(text="Remote: online access is off", icon="ERROR")
                _wrapped_labels(layout.column(), session.OFFLINE_MESSAGE, width - 40)
            else:  # draw() only shows what the last check found; checks run on a worker thread
                known = status.url == url.rstrip("/")
                if session.starting():
                    row.label(text="Remote: checking…", icon="TIME")
                elif not known or status.reachable is None:
                    row.label(text="Remote: not checked yet", icon="QUESTION")
                elif status.reachable:
                    row.label(text="Remote: reachable", icon="CHECKMARK")
                else:
                    row.alert = True
                    row.label(text="Remote: unreachable", icon="ERROR")
                row.operator("orbitex.backend_start", text="Check", icon="FILE_REFRESH")
                layout.label(text=url, icon="URL")
                if known and status.reachable is False:
                    col = layout.column(align=True)
                    col.alert = True
                    _wrapped_labels(col, status.detail, width - 40)
        for problem in prefs.problems():
            col = layout.column(align=True)
            col.alert = True
            _wrapped_labels(col, problem, width - 40, icon="ERROR")


def _uv_options(layout, s) -> None:  # type: ignore[no-untyped-def]
    layout.prop(s, "uv_mode", expand=True)
    if s.uv_mode == "EXISTING":
        layout.prop(s, "uv_map", text="", placeholder="active render UV map")


def _selected_meshes(context) -> list:  # type: ignore[no-untyped-def]
    return [o for o in context.selected_objects if o.type == "MESH"]


class ORBITEX_PT_texture(_OrbitexSidebar, bpy.types.Panel):
    bl_idname = "ORBITEX_PT_texture"
    bl_label = "Texture"

    def draw(self, context):
        layout, s = self.layout, settings(context)
        col = layout.column()
        col.prop(s, "image_path")
        if not s.image_path:
            col.template_ID(s, "image", open="image.open")
        col.prop_search(s, "camera", context.scene, "objects", text="Camera", icon="CAMERA_DATA")
        col.prop(s, "generator")
        row = col.row(align=True)
        row.prop(s, "frames")
        row.prop(s, "size")
        col.prop(s, "texture_size")
        _uv_options(col, s)
        meshes = _selected_meshes(context)
        if not meshes:
            layout.label(text="Select one or more meshes", icon="INFO")
        op = layout.operator("orbitex.texture_selected", text=f"Texture {len(meshes) or ''} Selected".replace("  ", " "),
                             icon="TEXTURE")
        copy_options(s, op, (TextureOptions,))


class ORBITEX_PT_bake(_OrbitexSidebar, bpy.types.Panel):
    bl_idname = "ORBITEX_PT_bake"
    bl_label = "Bake from Cameras"

    def draw(self, context):
        layout, s = self.layout, settings(context)
        col = layout.column()
        col.prop(s, "source", text="")
        if s.source == "VIEW_SET":
            col.prop(s, "views_folder")
            col.prop(s, "views_frame")
        else:
            col.prop(s, "camera_scope", text="")
            if s.source == "IMAGE_FOLDER":
                col.prop(s, "image_folder")
            cams = [o for o in (context.scene.objects if s.camera_scope == "ALL" else context.selected_objects)
                    if o.type == "CAMERA"]
            col.label(text=f"{len(cams)} camera(s)", icon="CAMERA_DATA")
        col.prop(s, "method")
        col.prop(s, "texture_size")
        col.prop(s, "align")
        _uv_options(col, s)
        if not _selected_meshes(context):
            layout.label(text="Select one or more meshes", icon="INFO")
        op = layout.operator("orbitex.bake_from_cameras", icon="RENDER_STILL")
        copy_options(s, op, (BakeOptions,))


class ORBITEX_PT_batch(_OrbitexSidebar, bpy.types.Panel):
    bl_idname = "ORBITEX_PT_batch"
    bl_label = "Batch"

    def draw(self, context):
        layout, s = self.layout, settings(context)
        layout.prop(s, "batch_collection")
        layout.prop(s, "batch_mode", expand=True)
        layout.label(text=f"Uses the {'Texture' if s.batch_mode == 'TEXTURE' else 'Bake from Cameras'} settings",
                     icon="INFO")
        op = layout.operator("orbitex.batch_collection", text="Run Batch", icon="OUTLINER_COLLECTION")
        copy_options(s, op, (TextureOptions, BakeOptions))
        op.collection = s.batch_collection.name if s.batch_collection is not None else ""
        op.mode = s.batch_mode
        if batches:
            batch = batches[-1]
            box = layout.box()
            box.label(text=f"{batch.collection} · {batch.job_type}", icon="OUTLINER_COLLECTION")
            row = box.row()
            row.progress(factor=batch.progress, type="BAR", text=f"{batch.progress * 100:.0f}%")
            if batch.active:
                row.operator("orbitex.cancel_batch", text="", icon="X")
            width = context.region.width if context.region else 300
            done, failed, skipped = batch.outcome()
            col = box.column(align=True)
            col.alert = bool(failed)
            _wrapped_labels(col, batch.summary_text(), width - 40)
            for line in batch.node_lines():  # per backend machine (many with the Ray engine)
                box.label(text=line, icon="NETWORK_DRIVE")
