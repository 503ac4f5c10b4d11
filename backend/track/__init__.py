"""Visibility and correspondence between views: which pixels of a target view the source (or any
finished reference view) saw, and where. geometry.py: exact reprojection through rendered surface
buffers (meshes, Gaussians; forward and backward); flow.py: dense optical flow chained along an
orbit (4D, no geometry); masks.py: unseen masks, dilation, coherence measures."""
