"""Sidebar UI in the 3D view, tab "Orbitex"; CLASSES is what registration registers, in order."""
from .jobs import ORBITEX_PT_jobs, ORBITEX_PT_preview
from .reconstruct import ORBITEX_PT_reconstruct
from .complete import ORBITEX_PT_complete
from .refine import ORBITEX_PT_refine
from .settings import (OrbitexRefineSettings, OrbitexSubjectSlot, OrbitexTexturingSettings, register_properties,
                       unregister_properties)
from .texturing import ORBITEX_PT_backend, ORBITEX_PT_bake, ORBITEX_PT_batch, ORBITEX_PT_texture

CLASSES = (OrbitexTexturingSettings, OrbitexSubjectSlot, OrbitexRefineSettings, ORBITEX_PT_backend,
           ORBITEX_PT_preview, ORBITEX_PT_texture, ORBITEX_PT_bake, ORBITEX_PT_batch, ORBITEX_PT_reconstruct,
           ORBITEX_PT_refine, ORBITEX_PT_complete, ORBITEX_PT_jobs)
