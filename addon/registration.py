"""register()/unregister() for the whole extension. A register() that fails part way undoes what it
did (classes, scene properties, session) and re-raises; unregister() leaves nothing behind."""
from __future__ import annotations

import bpy

from . import session
from .preferences import OrbitexPreferences
from ..operators import CLASSES as OPERATOR_CLASSES
from ..panels import CLASSES as PANEL_CLASSES
from ..panels import register_properties, unregister_properties

CLASSES = (OrbitexPreferences, *OPERATOR_CLASSES, *PANEL_CLASSES)


def register() -> None:
    registered = []
    properties = started = False
    try:
        for cls in CLASSES:
            bpy.utils.register_class(cls)
            registered.append(cls)
        register_properties()  # scene settings of the sidebar sections (after their classes)
        properties = True
        session.startup()
        started = True
    except Exception:
        if started:
            session.shutdown()
        if properties:
            unregister_properties()
        for cls in reversed(registered):
            bpy.utils.unregister_class(cls)
        raise


def unregister() -> None:
    session.shutdown()
    unregister_properties()
    for cls in reversed(CLASSES):
        if getattr(cls, "is_registered", False):
            bpy.utils.unregister_class(cls)
