"""OpenGL G-buffer rasterizer on a headless EGL context (moderngl; Mesa llvmpipe on a CPU).

Two passes per view:
1. Draw the mesh (indexed, no culling, depth test) writing gl_PrimitiveID + 1 into an R32I
   texture (0 = empty).
2. A compute shader redoes each pixel exactly: it intersects the pixel-centre ray with the
   triangle found in pass 1 (perspective-correct barycentrics as triple products in camera
   space, from vertices moved to camera space once per view). GL snaps vertices to a 1/256-pixel
   grid, so a centre within a few thousandths of a pixel of an edge can land in the neighbouring
   triangle: such pixels (centre outside their triangle) take the nearest triangle of their 3x3
   neighbourhood that holds the centre, ties to the lower id, as the PyTorch reference decides.
   (An empty silhouette pixel that snapping missed stays empty: a handful per view, not worth a
   neighbourhood search over the whole background.) Results land in storage buffers already in
   image order (row 0 at the top), so the readback is a plain copy.
The context is created once per process; the mesh is uploaded once per mesh (cached by
identity), relative to its box centre so float32 stays precise for meshes far from the origin.
"""
from __future__ import annotations

import math
import threading
import weakref
from types import SimpleNamespace

import numpy as np
import torch

from ..assets.mesh import Mesh
from ..assets.cameras import Camera
from .raster_base import near_far

_VERTEX_SHADER = """
#version 430
uniform mat4 mvp;
in vec3 in_pos;
void main() {
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""

_FRAGMENT_SHADER = """
#version 430
layout(location = 0) out int out_tri;
void main() {
    out_tri = gl_PrimitiveID + 1;
}
"""

_LOCAL = 8  # compute work group: 8 x 8 pixels
_TO_CAMERA_SHADER = """
#version 430
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Positions { float pos[]; };
layout(std430, binding = 4) writeonly buffer Camera { vec4 cam[]; };
uniform mat4 view;  // mesh-local -> camera (OpenGL camera: looks down -Z)
uniform int count;
void main() {
    int v = int(gl_GlobalInvocationID.x);
    if (v < count) cam[v] = view * vec4(pos[3 * v], pos[3 * v + 1], pos[3 * v + 2], 1.0);
}
"""
_RESOLVE_SHADER = """
#version 430
layout(local_size_x = %(local)d, local_size_y = %(local)d) in;
layout(binding = 0) uniform isampler2D ids;  // pass 1: triangle id + 1, GL rows (bottom-up)
layout(std430, binding = 1) readonly buffer Faces { int faces[]; };
layout(std430, binding = 2) writeonly buffer OutTri { int out_tri[]; };
layout(std430, binding = 3) writeonly buffer OutBary { float out_bary[]; };
layout(std430, binding = 4) readonly buffer Camera { vec4 cam[]; };
uniform vec4 intrinsics;  // fx, fy, cx, cy (pixels, row 0 at the top)
uniform ivec2 size;       // width, height

// Ray (from the camera centre along d, d.z = -1) against triangle t (Moller-Trumbore on edge
// vectors, which keeps float32 precise for small triangles): perspective-correct barycentrics
// and the hit's view depth; true when it passes inside (edges included) in front of the camera.
bool hit(int t, vec3 d, out vec3 b, out float depth) {
    vec3 p0 = cam[faces[3 * t]].xyz;
    vec3 e1 = cam[faces[3 * t + 1]].xyz - p0;
    vec3 e2 = cam[faces[3 * t + 2]].xyz - p0;
    vec3 pv = cross(d, e2);
    float det = dot(e1, pv);
    if (det == 0.0) { b = vec3(0.0); depth = 0.0; return false; }
    vec3 tv = -p0;
    vec3 qv = cross(tv, e1);
    float u = dot(tv, pv) / det;
    float v = dot(d, qv) / det;
    b = vec3(1.0 - u - v, u, v);
    depth = dot(e2, qv) / det;  // ray parameter = view depth, as d.z = -1
    return u >= 0.0 && v >= 0.0 && b.x >= 0.0 && depth > 0.0;
}

void main() {
    ivec2 px = ivec2(gl_GlobalInvocationID.xy);  // image pixel, row 0 at the top
    if (px.x >= size.x || px.y >= size.y) return;
    int row = size.y - 1 - px.y;
    int own = texelFetch(ids, ivec2(px.x, row), 0).r - 1;
    int best = -1;
    vec3 best_b = vec3(0.0);
    if (own >= 0) {
        vec3 d = vec3((float(px.x) + 0.5 - intrinsics.z) / intrinsics.x,
                      -(float(px.y) + 0.5 - intrinsics.w) / intrinsics.y, -1.0);
        vec3 b;
        float depth;
        if (hit(own, d, b, depth)) {
            best = own;
            best_b = b;
        } else {  // snapped into the wrong triangle: nearest neighbour triangle holding the centre
            float best_depth = 3.0e38;
            for (int dy = -1; dy <= 1; ++dy) {
                for (int dx = -1; dx <= 1; ++dx) {
                    ivec2 q = ivec2(px.x + dx, row + dy);
                    if (q.x < 0 || q.y < 0 || q.x >= size.x || q.y >= size.y) continue;
                    int t = texelFetch(ids, q, 0).r - 1;
                    if (t < 0 || t == own || t == best) continue;
                    if (hit(t, d, b, depth) && (depth < best_depth || (depth == best_depth && t < best))) {
                        best = t;
                        best_b = b;
                        best_depth = depth;
                    }
                }
            }
            if (best < 0) {  // none does: keep GL's triangle, the centre clamped onto it
                hit(own, d, b, depth);
                b = max(b, vec3(0.0));
                best = own;
                best_b = b / max(b.x + b.y + b.z, 1e-30);
            }
        }
    }
    int i = px.y * size.x + px.x;
    out_tri[i] = best;
    out_bary[3 * i] = best_b.x;
    out_bary[3 * i + 1] = best_b.y;
    out_bary[3 * i + 2] = best_b.z;
}
""" % {"local": _LOCAL}

_lock = threading.Lock()
_renderer: "_Renderer | None" = None  # one EGL context, its shaders and buffers per process


class ModernGLRasterizer:
    """A handle on the process's one GL renderer: handles are cheap, and however many are made
    (one per job, say) there is one context, one set of shaders and one uploaded mesh."""

    name = "moderngl"

    def __init__(self) -> None:
        global _renderer
        with _lock:
            if _renderer is None:
                _renderer = _Renderer()
            self._renderer = _renderer

    def rasterize(self, mesh: Mesh, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        with _lock, self._renderer.ctx:
            return self._renderer.rasterize(mesh, camera)

    def close(self) -> None:
        """Free the uploaded mesh and render targets (the context and shaders stay)."""
        with _lock, self._renderer.ctx:
            self._renderer.release()


class _Renderer:
    def __init__(self) -> None:
        import moderngl

        self.ctx = moderngl.create_standalone_context(backend="egl", require=430)
        with self.ctx:
            self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
            self.to_camera = self.ctx.compute_shader(_TO_CAMERA_SHADER)
            self.resolver = self.ctx.compute_shader(_RESOLVE_SHADER)
        self._mesh_ref: weakref.ref | None = None
        self._mesh_objects: list = []
        self._view_objects: list = []
        self._size: tuple[int, int] = (0, 0)

    def _upload(self, mesh: Mesh) -> None:
        if self._mesh_ref is not None and self._mesh_ref() is mesh:
            return
        self._release(self._mesh_objects)
        lo, hi = mesh.positions.min(0), mesh.positions.max(0)
        self._origin = (lo.astype(np.float64) + hi) / 2
        local = (mesh.positions.astype(np.float64) - self._origin).astype(np.float32)
        self._positions = self.ctx.buffer(local.tobytes())
        self._faces = self.ctx.buffer(mesh.faces.astype(np.int32).tobytes())
        self._vao = self.ctx.vertex_array(self.program, [(self._positions, "3f", "in_pos")],
                                          index_buffer=self._faces, index_element_size=4)
        self._camera_positions = self.ctx.buffer(reserve=16 * len(local))
        self._num_vertices = len(local)
        self._mesh_objects = [self._vao, self._positions, self._faces, self._camera_positions]
        # near_far reads only the bounding box: its two corners give the same planes without a
        # pass over every vertex per view
        self._bounds = SimpleNamespace(positions=np.stack([lo, hi]))
        self._mesh_ref = weakref.ref(mesh)

    def _targets(self, width: int, height: int) -> None:
        if self._size == (width, height):
            return
        self._release(self._view_objects)
        self._ids = self.ctx.texture((width, height), 1, dtype="i4")
        self._depth = self.ctx.depth_renderbuffer((width, height))
        self._fbo = self.ctx.framebuffer(color_attachments=[self._ids], depth_attachment=self._depth)
        self._out_tri = self.ctx.buffer(reserve=width * height * 4)
        self._out_bary = self.ctx.buffer(reserve=width * height * 12)
        self._view_objects = [self._fbo, self._ids, self._depth, self._out_tri, self._out_bary]
        self._size = (width, height)

    @staticmethod
    def _release(objects: list) -> None:
        for obj in objects:
            obj.release()
        objects.clear()

    def rasterize(self, mesh: Mesh, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        import moderngl

        w, h = camera.width, camera.height
        tri = np.empty((h, w), dtype=np.int32)
        bary = np.empty((h, w, 3), dtype=np.float32)
        # (the caller holds the lock and has made the context current)
        self._upload(mesh)
        self._targets(w, h)
        near, far = near_far(self._bounds, camera)
        shift = np.eye(4)
        shift[:3, 3] = self._origin
        view = camera.w2c() @ shift
        # pass 1: which triangle each pixel sees
        self.program["mvp"].write((camera.projection(near, far) @ view).T.astype(np.float32).tobytes())
        self._fbo.use()
        self._fbo.viewport = (0, 0, w, h)
        self.ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.depth_func = "<"
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._vao.render(moderngl.TRIANGLES)
        # pass 2: exact triangle and barycentrics per pixel centre
        self._positions.bind_to_storage_buffer(0)
        self._camera_positions.bind_to_storage_buffer(4)
        self.to_camera["view"].write(view.T.astype(np.float32).tobytes())  # GL wants column-major
        self.to_camera["count"].value = self._num_vertices
        self.to_camera.run(math.ceil(self._num_vertices / 64))
        self.ctx.memory_barrier()
        self._ids.use(0)
        self._faces.bind_to_storage_buffer(1)
        self._out_tri.bind_to_storage_buffer(2)
        self._out_bary.bind_to_storage_buffer(3)
        self.resolver["intrinsics"].value = (camera.fx, camera.fy, camera.cx, camera.cy)
        self.resolver["size"].value = (w, h)
        self.resolver.run(math.ceil(w / _LOCAL), math.ceil(h / _LOCAL))
        self.ctx.memory_barrier()
        self._out_tri.read_into(tri)
        self._out_bary.read_into(bary)
        return torch.from_numpy(tri), torch.from_numpy(bary)

    def release(self) -> None:
        self._release(self._mesh_objects)
        self._release(self._view_objects)
        self._mesh_ref = None
        self._size = (0, 0)
