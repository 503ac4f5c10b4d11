"""One module per user action; CLASSES is what registration registers, in order."""
from .backend import ORBITEX_OT_backend_start, ORBITEX_OT_backend_stop
from .jobs import ORBITEX_OT_cancel_job, ORBITEX_OT_clear_jobs
from .render_orbit_preview import ORBITEX_OT_render_orbit_preview

CLASSES = (
    ORBITEX_OT_backend_start,
    ORBITEX_OT_backend_stop,
    ORBITEX_OT_cancel_job,
    ORBITEX_OT_clear_jobs,
    ORBITEX_OT_render_orbit_preview,
)
