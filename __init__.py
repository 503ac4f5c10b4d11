"""Orbitex Blender extension entry point (the repository root is the extension source).

Importing this package has no side effects and does not import bpy, so tools that walk the
repository (pytest, linters) never trip over it; Blender calls register()/unregister().
"""


def register() -> None:
    from .addon import registration

    registration.register()


def unregister() -> None:
    from .addon import registration

    registration.unregister()
