"""One module per user action; CLASSES is what registration registers, in order."""
from .backend import ORBITEX_OT_backend_start, ORBITEX_OT_backend_stop
from .jobs import ORBITEX_OT_cancel_job, ORBITEX_OT_clear_jobs
from .render_orbit_preview import ORBITEX_OT_render_orbit_preview
from .reconstruct_gaussians import ORBITEX_OT_reconstruct_gaussians
from .complete_back import ORBITEX_OT_complete_back
from .texture_selected import ORBITEX_OT_texture_selected
from .bake_from_cameras import ORBITEX_OT_bake_from_cameras
from .batch_collection import ORBITEX_OT_batch_collection, ORBITEX_OT_cancel_batch
from .results import ORBITEX_OT_apply_result, ORBITEX_OT_open_result_folder
from .refine_subject import ORBITEX_OT_refine_subject, OrbitexSubjectImage
from .refine_photos import ORBITEX_OT_refine_subject_add, ORBITEX_OT_refine_subject_remove

CLASSES = (
    ORBITEX_OT_backend_start,
    ORBITEX_OT_backend_stop,
    ORBITEX_OT_cancel_job,
    ORBITEX_OT_clear_jobs,
    ORBITEX_OT_render_orbit_preview,
    ORBITEX_OT_reconstruct_gaussians,
    ORBITEX_OT_complete_back,
    ORBITEX_OT_texture_selected,
    ORBITEX_OT_bake_from_cameras,
    ORBITEX_OT_batch_collection,
    ORBITEX_OT_cancel_batch,
    ORBITEX_OT_apply_result,
    ORBITEX_OT_open_result_folder,
    OrbitexSubjectImage,  # before the operator whose property holds it
    ORBITEX_OT_refine_subject,
    ORBITEX_OT_refine_subject_add,
    ORBITEX_OT_refine_subject_remove,
)
