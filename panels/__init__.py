"""Sidebar UI in the 3D view, tab "Orbitex"; CLASSES is what registration registers, in order."""
from .jobs import ORBITEX_PT_jobs, ORBITEX_PT_preview

CLASSES = (ORBITEX_PT_preview, ORBITEX_PT_jobs)
