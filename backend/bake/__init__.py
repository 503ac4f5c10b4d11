"""TextureOptimizer baking (Ink3D): view sets onto a mesh's own UV map.

Entry point: `backend.bake.baker.bake(mesh, views, params, progress) -> BakeResult`; options in
`backend.bake.params.BakeParams` (torch-free). Reusable pieces: `fill.gutter_fill`,
`uv_raster.texel_samples`; the surface voxels and their BFS fill are in `backend.assets.surface_voxels`.
This package's __init__ imports nothing, so importing the params stays torch-free.
"""
