"""Writing a baked texture into a GLB that keeps the input mesh as it is.

glTF/GLB input: the input document is copied with pygltflib (nodes, transforms, meshes, vertex and
triangle order, other attributes, skins, animations all untouched); every buffer is packed into
the GLB's one binary chunk, external images are embedded, and a PNG image + sampler + texture +
PBR material (base colour on the chosen TEXCOORD_n) is added and put on every triangle primitive.
When the input had no UV map (`vmapping` given: xatlas split vertices along its seams), each
triangle primitive gets new accessors: every attribute gathered through `vmapping`, the new
TEXCOORD_0 and new indices; node transforms are still untouched. A glTF mesh instanced by
several nodes keeps the charts of its first instance.
OBJ/PLY input: trimesh writes the mesh (vertex order, triangles and UVs as given).
"""
from __future__ import annotations

import io
import mimetypes
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from .gltf_primitives import Primitive, buffer_bytes, load_gltf, read_accessor
from .mesh import Mesh

_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _REPEAT = 9729, 9987, 10497


def png_bytes(texture: np.ndarray) -> bytes:
    from PIL import Image

    image = Image.fromarray((np.clip(texture, 0, 1) * 255 + 0.5).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_textured_glb(source: str | Path, out: str | Path, texture: np.ndarray, mesh: Mesh,
                       uv_index: int | None = 0, vmapping: np.ndarray | None = None,
                       primitives: Sequence[Primitive] | None = None, name: str = "orbitex_bake") -> Path:
    """Write `out` (.glb): the `source` mesh with `texture` as its base colour.

    `mesh` is the baked mesh (used for OBJ/PLY sources and, with `vmapping` and `primitives`
    from `load_gltf_mesh`, for glTF sources that had no UV map). `uv_index` is the TEXCOORD_n the
    texture lives on for glTF sources that had one."""
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise InputError(f"{out}: refusing to overwrite the input mesh")
    out.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix.lower() in (".glb", ".gltf"):
        _write_from_gltf(source, out, texture, mesh, uv_index, vmapping, primitives, name)
    else:
        _write_with_trimesh(out, texture, mesh)
    return out


def _write_with_trimesh(out: Path, texture: np.ndarray, mesh: Mesh) -> None:
    import trimesh
    from PIL import Image

    image = Image.fromarray((np.clip(texture, 0, 1) * 255 + 0.5).astype(np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image, metallicFactor=0.0, roughnessFactor=1.0)
    tm = trimesh.Trimesh(mesh.positions, mesh.faces, vertex_normals=mesh.normals, process=False,
                         visual=trimesh.visual.TextureVisuals(uv=mesh.uvs, material=material))
    tm.export(out, file_type="glb")


class _Blob:
    """The GLB binary chunk being assembled (4-byte aligned pieces)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> int:
        pad = (-self.size) % 4
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        offset = self.size
        self.parts.append(data)
        self.size += len(data)
        return offset

    def bytes(self) -> bytes:
        return b"".join(self.parts) + b"\0" * ((-self.size) % 4)


def _write_from_gltf(source: Path, out: Path, texture: np.ndarray, mesh: Mesh, uv_index: int | None,
                     vmapping: np.ndarray | None, primitives: Sequence[Primitive] | None, name: str) -> None:
    from pygltflib import (Accessor, Buffer, BufferView, Image, Material, PbrMetallicRoughness, Sampler, Texture,
                           TextureInfo)

    gltf = load_gltf(source)
    buffers = buffer_bytes(gltf, source.parent)
    blob = _Blob()
    starts = [blob.add(data) for data in buffers]
    for view in gltf.bufferViews:  # every buffer now lives in the one GLB chunk
        view.byteOffset = (view.byteOffset or 0) + starts[view.buffer]
        view.buffer = 0
    for image in gltf.images:  # embed images that were files or data URIs
        if image.uri is not None:
            if image.uri.startswith("data:"):
                import base64

                header, payload = image.uri.split(",", 1)
                data = base64.b64decode(payload)
                mime = header[5:].split(";")[0] or "image/png"
            else:
                file = source.parent / image.uri
                if not file.is_file():
                    raise InputError(f"{file}: image file of the glTF is missing")
                data = file.read_bytes()
                mime = mimetypes.guess_type(file.name)[0] or "image/png"
            gltf.bufferViews.append(BufferView(buffer=0, byteOffset=blob.add(data), byteLength=len(data)))
            image.uri, image.bufferView, image.mimeType = None, len(gltf.bufferViews) - 1, mime

    def add_accessor(array: np.ndarray, kind: str, component: int, target: int | None) -> int:
        data = np.ascontiguousarray(array)
        gltf.bufferViews.append(BufferView(buffer=0, byteOffset=blob.add(data.tobytes()), byteLength=data.nbytes,
                                           target=target))
        acc = Accessor(bufferView=len(gltf.bufferViews) - 1, componentType=component, count=len(data), type=kind)
        if kind == "VEC3" and component == _FLOAT:
            acc.min, acc.max = data.min(0).tolist(), data.max(0).tolist()
        gltf.accessors.append(acc)
        return len(gltf.accessors) - 1

    texcoord = uv_index if uv_index is not None else 0
    if vmapping is not None:
        if primitives is None:
            raise ValueError("a new UV map needs the primitive records of load_gltf_mesh")
        texcoord = _add_uv_map(gltf, buffers, mesh, vmapping, primitives, add_accessor)

    png = png_bytes(texture)
    gltf.bufferViews.append(BufferView(buffer=0, byteOffset=blob.add(png), byteLength=len(png)))
    gltf.images.append(Image(bufferView=len(gltf.bufferViews) - 1, mimeType="image/png", name=name))
    gltf.samplers.append(Sampler(magFilter=_LINEAR, minFilter=_LINEAR_MIPMAP_LINEAR, wrapS=_REPEAT, wrapT=_REPEAT))
    gltf.textures.append(Texture(sampler=len(gltf.samplers) - 1, source=len(gltf.images) - 1, name=name))
    gltf.materials.append(Material(name=name, doubleSided=False, pbrMetallicRoughness=PbrMetallicRoughness(
        baseColorTexture=TextureInfo(index=len(gltf.textures) - 1, texCoord=texcoord),
        baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=1.0)))
    material = len(gltf.materials) - 1
    for m in gltf.meshes:
        for prim in m.primitives:
            if (prim.mode if prim.mode is not None else 4) == 4:
                prim.material = material
    _drop_unused_materials(gltf)
    _set_view_targets(gltf)
    data = blob.bytes()
    gltf.buffers = [Buffer(byteLength=len(data))]
    gltf.set_binary_blob(data)
    gltf.save_binary(str(out))


def _add_uv_map(gltf, buffers: list[bytes], mesh: Mesh, vmapping: np.ndarray,  # type: ignore[no-untyped-def]
                primitives: Sequence[Primitive], add_accessor) -> int:
    """Give each triangle primitive the xatlas-split vertices and the new UVs; returns its TEXCOORD index."""
    done: set[tuple[int, int]] = set()
    for rec in primitives:
        key = (rec.mesh, rec.primitive)
        if key in done:  # an instanced mesh: its first instance's charts
            continue
        done.add(key)
        prim = gltf.meshes[rec.mesh].primitives[rec.primitive]
        new_faces = mesh.faces[rec.face_start:rec.face_start + rec.face_count].astype(np.int64)
        if rec.mirrored:
            new_faces = new_faces[:, ::-1]  # back to the file's own winding
        used, local_faces = np.unique(new_faces, return_inverse=True)
        local_faces = local_faces.reshape(-1, 3)
        source_vertex = vmapping[used] - rec.vertex_start  # index into this primitive's own accessors
        attrs = prim.attributes
        for key_name in [k for k, v in attrs.__dict__.items() if v is not None]:
            data = read_accessor(gltf, getattr(attrs, key_name), buffers)[source_vertex]
            acc = gltf.accessors[getattr(attrs, key_name)]
            kind = acc.type
            if data.dtype.kind == "f":
                setattr(attrs, key_name, add_accessor(data.astype(np.float32), kind, _FLOAT, 34962))
            else:
                setattr(attrs, key_name, add_accessor(data, kind, acc.componentType, 34962))
        uv = mesh.uvs[used]
        attrs.TEXCOORD_0 = add_accessor(np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1).astype(np.float32), "VEC2", _FLOAT,
                                        34962)
        for target in prim.targets or []:
            for k, index in list(target.items()):
                target[k] = add_accessor(read_accessor(gltf, index, buffers)[source_vertex].astype(np.float32),
                                         gltf.accessors[index].type, _FLOAT, 34962)
        prim.indices = add_accessor(local_faces.astype(np.uint32).reshape(-1, 1).ravel(), "SCALAR", _UINT32, 34963)
    return 0


def _texture_infos(obj, found: list) -> list:  # type: ignore[no-untyped-def]
    """Every textureInfo (core or extension) below `obj`: the objects under keys named *Texture."""
    if isinstance(obj, list):
        for v in obj:
            _texture_infos(v, found)
        return found
    items = obj.items() if isinstance(obj, dict) else (
        ((f, getattr(obj, f)) for f in obj.__dataclass_fields__) if hasattr(obj, "__dataclass_fields__") else ())
    for key, value in items:
        if value is None or isinstance(value, (str, int, float, bool)):
            continue
        if key.endswith("Texture") and (value.get("index") if isinstance(value, dict) else getattr(value, "index", None)) is not None:
            found.append(value)
        _texture_infos(value, found)
    return found


def _reindex(items: list, keep: list[int]) -> tuple[list, dict[int, int]]:  # type: ignore[no-untyped-def]
    return [items[i] for i in keep], {old: new for new, old in enumerate(keep)}


def _drop_unused_materials(gltf) -> None:  # type: ignore[no-untyped-def]
    """The input's materials that no primitive references any more go, and then the textures,
    images and samplers nothing references (the glTF validator reports them as unused).
    Image bytes stay in the binary chunk (their bufferViews are not renumbered)."""
    prims = [prim for m in gltf.meshes for prim in m.primitives]
    used = sorted({p.material for p in prims if p.material is not None})
    gltf.materials, remap = _reindex(gltf.materials, used)
    for p in prims:
        if p.material is not None:
            p.material = remap[p.material]
    infos = _texture_infos(gltf.materials, [])

    def info_index(info, value=None):  # type: ignore[no-untyped-def]
        if isinstance(info, dict):
            if value is not None:
                info["index"] = value
            return info["index"]
        if value is not None:
            info.index = value
        return info.index

    gltf.textures, remap = _reindex(gltf.textures, sorted({info_index(i) for i in infos}))
    for info in infos:
        info_index(info, remap[info_index(info)])

    def sources(texture) -> list[tuple[object, str]]:  # type: ignore[no-untyped-def]
        holders = [(texture, "source")] + [(ext, "source") for ext in (texture.extensions or {}).values()
                                           if isinstance(ext, dict) and "source" in ext]
        return [(h, k) for h, k in holders if (h.get(k) if isinstance(h, dict) else getattr(h, k)) is not None]

    def get(h, k):  # type: ignore[no-untyped-def]
        return h.get(k) if isinstance(h, dict) else getattr(h, k)

    def put(h, k, v) -> None:  # type: ignore[no-untyped-def]
        if isinstance(h, dict):
            h[k] = v
        else:
            setattr(h, k, v)

    refs = [ref for t in gltf.textures for ref in sources(t)]
    gltf.images, remap = _reindex(gltf.images, sorted({get(h, k) for h, k in refs}))
    for h, k in refs:
        put(h, k, remap[get(h, k)])
    gltf.samplers, remap = _reindex(gltf.samplers, sorted({t.sampler for t in gltf.textures if t.sampler is not None}))
    for t in gltf.textures:
        if t.sampler is not None:
            t.sampler = remap[t.sampler]


def _set_view_targets(gltf) -> None:  # type: ignore[no-untyped-def]
    """bufferView.target for views read only as vertex attributes (ARRAY_BUFFER) or only as
    indices (ELEMENT_ARRAY_BUFFER); views with other uses (animation, skins, images) keep none."""
    uses: dict[int, set[int]] = {}
    attribute_accessors, index_accessors = set(), set()
    for m in gltf.meshes:
        for prim in m.primitives:
            attribute_accessors.update(v for v in prim.attributes.__dict__.values() if isinstance(v, int))
            for target in prim.targets or []:
                attribute_accessors.update(v for v in target.values() if isinstance(v, int))
            if prim.indices is not None:
                index_accessors.add(prim.indices)
    for i, acc in enumerate(gltf.accessors):
        if acc.bufferView is None:
            continue
        kind = _ARRAY_BUFFER if i in attribute_accessors else _ELEMENT_ARRAY_BUFFER if i in index_accessors else 0
        uses.setdefault(acc.bufferView, set()).add(kind)
        if acc.sparse is not None:  # sparse indices/values views are never vertex buffers
            uses.setdefault(acc.sparse.indices.bufferView, set()).add(0)
            uses.setdefault(acc.sparse.values.bufferView, set()).add(0)
    for image in gltf.images:
        if image.bufferView is not None:
            uses.setdefault(image.bufferView, set()).add(0)
    for view_index, kinds in uses.items():
        view = gltf.bufferViews[view_index]
        if view.target is None and len(kinds) == 1 and 0 not in kinds:
            view.target = kinds.pop()
