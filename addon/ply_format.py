"""PLY files on the Blender side, with the standard library and Blender's numpy (1.x): no plyfile.

Reads binary PLY (little- or big-endian): the `vertex` element as named float32 columns, and the
`face` element as triangles. Two readers sit on it: `read_gaussians` (the 3DGS layout, DESIGN.md)
and `read_triangles` (the meshes the backend writes). `write_points` writes a point scan.
Every failure is a PlyError whose message names the file and says what is wrong with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# PLY scalar type names (both spellings) -> numpy type code without byte order
SCALAR_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
MAX_HEADER_BYTES = 1 << 20
C0 = 0.28209479177387814  # degree-0 spherical-harmonic constant: rgb = 0.5 + C0 * f_dc


class PlyError(ValueError):
    """The file is not a PLY this reader understands, or it is damaged; the message names the file."""


@dataclass
class Property:
    name: str
    type: str                    # numpy code of the value ("f4"), or of the list items
    count_type: str | None = None  # list properties: numpy code of the length prefix


@dataclass
class Element:
    name: str
    count: int
    properties: list[Property]

    @property
    def is_fixed_size(self) -> bool:
        return all(p.count_type is None for p in self.properties)


@dataclass
class Header:
    format: str                  # "binary_little_endian" | "binary_big_endian" | "ascii"
    elements: list[Element]
    data_offset: int             # bytes before the first element's data

    @property
    def byte_order(self) -> str:
        return "<" if self.format == "binary_little_endian" else ">"

    def element(self, name: str) -> Element | None:
        return next((e for e in self.elements if e.name == name), None)


def read_header(path: Path) -> Header:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(MAX_HEADER_BYTES)
    except OSError as exc:
        raise PlyError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from None
    if not head.startswith(b"ply"):
        raise PlyError(f"{path.name}: not a PLY file (it does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise PlyError(f"{path.name}: the PLY header never ends ('end_header' is missing); the file is truncated or corrupt")
    newline = head.find(b"\n", end)
    if newline < 0:
        raise PlyError(f"{path.name}: the PLY file is truncated right after its header")
    try:
        lines = head[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise PlyError(f"{path.name}: the PLY header is not ASCII text; the file is corrupt") from None
    fmt, elements = None, []
    for number, raw in enumerate(lines[1:], start=2):
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        bad = PlyError(f"{path.name}: header line {number} is malformed: {raw.strip()!r}")
        if words[0] == "format":
            if len(words) != 3:
                raise bad
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise bad
            elements.append(Element(words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise PlyError(f"{path.name}: header line {number} declares a property before any element")
            if len(words) == 3 and words[1] in SCALAR_TYPES:
                elements[-1].properties.append(Property(words[2], SCALAR_TYPES[words[1]]))
            elif len(words) == 5 and words[1] == "list" and words[2] in SCALAR_TYPES and words[3] in SCALAR_TYPES:
                elements[-1].properties.append(Property(words[4], SCALAR_TYPES[words[3]], SCALAR_TYPES[words[2]]))
            else:
                raise bad
        else:
            raise bad
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise PlyError(f"{path.name}: unknown PLY format {fmt!r}")
    if fmt == "ascii":
        raise PlyError(f"{path.name}: ASCII PLY is not supported here; save it as binary PLY "
                       "(3DGS trainers and splat tools write binary_little_endian)")
    return Header(fmt, elements, newline + 1)


def _dtype(element: Element, order: str) -> np.dtype:
    return np.dtype([(p.name, order + p.type) for p in element.properties])


def _truncated(path: Path, element: Element, need: int, have: int) -> PlyError:
    return PlyError(f"{path.name}: the file is truncated: its header declares {element.count} "
                    f"{element.name} records ({need} bytes) but only {max(have, 0)} bytes follow")


def _read_elements(path: Path, header: Header, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The records of the `wanted` elements (structured arrays; list properties as object arrays)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    offset, found = header.data_offset, {}
    order = header.byte_order
    for element in header.elements:
        if all(name in found for name in wanted):
            break
        if element.is_fixed_size:
            dtype = _dtype(element, order)
            need = element.count * dtype.itemsize
            if offset + need > len(data):
                raise _truncated(path, element, need, len(data) - offset)
            records = data[offset:offset + need].view(dtype) if need else np.zeros(0, dtype)
            offset += need
        else:
            records, offset = _read_list_element(path, element, data, offset, order)
        if element.name in wanted:
            found[element.name] = records
    return found


def _read_list_element(path: Path, element: Element, data: np.ndarray, offset: int,
                       order: str) -> tuple[np.ndarray, int]:
    """Records with list properties. Fast path: every list has the length of the first record's
    (the usual all-triangles face element); otherwise record by record."""
    start = offset
    lengths: list[int] = []
    for prop in element.properties:  # the first record fixes the candidate layout
        if prop.count_type is None:
            offset += np.dtype(prop.type).itemsize
            continue
        size = np.dtype(prop.count_type).itemsize
        if offset + size > len(data):
            raise _truncated(path, element, offset + size - start, len(data) - start)
        n = int(data[offset:offset + size].view(order + prop.count_type)[0])
        lengths.append(n)
        offset += size + n * np.dtype(prop.type).itemsize
    fields, it = [], iter(lengths)
    for prop in element.properties:
        if prop.count_type is None:
            fields.append((prop.name, order + prop.type))
        else:
            fields.append((prop.name + "__count", order + prop.count_type))
            fields.append((prop.name, order + prop.type, (next(it),)))
    dtype = np.dtype(fields)
    need = element.count * dtype.itemsize
    if element.count == 0:
        return np.zeros(0, dtype), start
    if start + need <= len(data):
        records = data[start:start + need].view(dtype)
        if all((records[p.name + "__count"] == n).all()
               for p, n in zip((p for p in element.properties if p.count_type), lengths)):
            return records, start + need
    return _read_list_records(path, element, data, start, order)


def _read_list_records(path: Path, element: Element, data: np.ndarray, offset: int,
                       order: str) -> tuple[np.ndarray, int]:
    start = offset
    rows = []
    for _ in range(element.count):
        row = []
        for prop in element.properties:
            if prop.count_type is None:
                size = np.dtype(prop.type).itemsize
                if offset + size > len(data):
                    raise _truncated(path, element, offset + size - start, len(data) - start)
                row.append(data[offset:offset + size].view(order + prop.type)[0])
                offset += size
            else:
                size = np.dtype(prop.count_type).itemsize
                if offset + size > len(data):
                    raise _truncated(path, element, offset + size - start, len(data) - start)
                n = int(data[offset:offset + size].view(order + prop.count_type)[0])
                offset += size
                item = np.dtype(prop.type).itemsize
                if offset + n * item > len(data):
                    raise _truncated(path, element, offset + n * item - start, len(data) - start)
                row.append(data[offset:offset + n * item].view(order + prop.type).copy())
                offset += n * item
        rows.append(tuple(row))
    records = np.empty(element.count, dtype=[(p.name, object) for p in element.properties])
    for i, row in enumerate(rows):
        records[i] = row
    return records, offset


# ------------------------------------------------------------------------------------- Gaussians

@dataclass
class GaussianPly:
    """A 3DGS PLY's vertex element: every property as a float32 column, in file order."""

    names: list[str]
    columns: dict[str, np.ndarray]  # name -> (N,) float32
    sh_degree: int

    def __len__(self) -> int:
        return len(self.columns["x"])

    @property
    def positions(self) -> np.ndarray:
        return np.stack([self.columns[a] for a in "xyz"], axis=1)

    def colors(self) -> np.ndarray:
        """(N, 3) base colour from the SH DC term, clamped to [0, 1] (what viewers show head-on)."""
        dc = np.stack([self.columns[f"f_dc_{i}"] for i in range(3)], axis=1)
        return np.clip(0.5 + C0 * dc, 0.0, 1.0)

    def opacities(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.columns["opacity"].astype(np.float64)))


def gaussian_property_names(sh_degree: int) -> list[str]:
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def read_gaussians(path: str | Path) -> GaussianPly:
    """Read a 3DGS PLY; PlyError names the file and the problem (not a PLY, truncated, not 3DGS, damaged)."""
    path = Path(path)
    header = read_header(path)
    vertex = header.element("vertex")
    if vertex is None:
        raise PlyError(f"{path.name}: the PLY has no 'vertex' element, so it holds no Gaussians")
    lists = [p.name for p in vertex.properties if p.count_type is not None]
    if lists:
        raise PlyError(f"{path.name}: the vertex element has list properties ({', '.join(lists)}); not a 3DGS PLY")
    names = [p.name for p in vertex.properties]
    rest = [n for n in names if n.startswith("f_rest_")]
    coefficients = 1 + len(rest) // 3
    degree = round(coefficients ** 0.5) - 1
    if len(rest) % 3 or (degree + 1) ** 2 != coefficients:
        raise PlyError(f"{path.name}: {len(rest)} f_rest_* properties do not make a spherical-harmonic "
                       "degree (expected 0, 9, 24 or 45)")
    missing = [n for n in gaussian_property_names(degree) if n not in names and n not in ("nx", "ny", "nz")]
    if missing:
        raise PlyError(f"{path.name}: not a 3DGS PLY, missing properties {', '.join(missing[:6])}"
                       f"{' ...' if len(missing) > 6 else ''}")
    if vertex.count == 0:
        raise PlyError(f"{path.name}: the PLY holds no Gaussians")
    records = _read_elements(path, header, ("vertex",))["vertex"]
    columns = {n: np.ascontiguousarray(records[n], dtype=np.float32) for n in names}
    table = np.stack([columns[n] for n in names], axis=1)
    bad = ~np.isfinite(table).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        which = [n for n in names if not np.isfinite(columns[n][first])]
        raise PlyError(f"{path.name}: Gaussian {first} has non-finite {', '.join(which[:4])} "
                       f"({int(bad.sum())} damaged in all); the file is corrupt")
    quats = np.stack([columns[f"rot_{i}"] for i in range(4)], axis=1)
    zero = np.linalg.norm(quats, axis=1) == 0
    if zero.any():
        raise PlyError(f"{path.name}: Gaussian {int(np.argmax(zero))} has a zero rotation quaternion")
    return GaussianPly(names, columns, degree)


# ------------------------------------------------------------------------------------- meshes

def read_triangles(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) float32 vertex positions and (F, 3) int32 triangles of a binary PLY mesh."""
    path = Path(path)
    header = read_header(path)
    vertex, face = header.element("vertex"), header.element("face")
    if vertex is None or not {"x", "y", "z"} <= {p.name for p in vertex.properties}:
        raise PlyError(f"{path.name}: the PLY has no vertex positions (x, y, z)")
    index_prop = None if face is None else next(
        (p for p in face.properties if p.name in ("vertex_indices", "vertex_index") and p.count_type), None)
    if face is not None and face.count and index_prop is None:
        raise PlyError(f"{path.name}: the face element has no vertex_indices list")
    found = _read_elements(path, header, ("vertex", "face") if face is not None else ("vertex",))
    records = found["vertex"]
    positions = np.stack([np.asarray(records[a], dtype=np.float32) for a in "xyz"], axis=1)
    faces = np.zeros((0, 3), np.int32)
    if face is not None and face.count:
        lists = found["face"][index_prop.name]
        if lists.dtype == object:  # polygons of mixed sizes: fan-triangulate each
            tris = [(poly[0], poly[i], poly[i + 1]) for poly in lists for i in range(1, len(poly) - 1)]
            faces = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
        else:
            polys = np.asarray(lists, dtype=np.int64)
            k = polys.shape[1]
            faces = np.concatenate([polys[:, [0, i, i + 1]] for i in range(1, k - 1)], axis=0) if k >= 3 \
                else np.zeros((0, 3), np.int64)
        if len(faces) and (faces.min() < 0 or faces.max() >= len(positions)):
            raise PlyError(f"{path.name}: a face refers to a vertex that does not exist; the file is corrupt")
        faces = faces.astype(np.int32)
    if not np.isfinite(positions).all():
        raise PlyError(f"{path.name}: vertex positions contain NaN or infinity; the file is corrupt")
    return positions, faces


def write_points(path: str | Path, points: np.ndarray, normals: np.ndarray | None = None) -> Path:
    """A binary little-endian PLY point cloud (x y z [nx ny nz] float32)."""
    points = np.asarray(points, dtype="<f4").reshape(-1, 3)
    columns = {a: points[:, i] for i, a in enumerate("xyz")}
    if normals is not None:
        normals = np.asarray(normals, "<f4").reshape(-1, 3)
        columns.update({a: normals[:, i] for i, a in enumerate(("nx", "ny", "nz"))})
    return _write_float_vertices(path, columns)


def write_gaussians(path: str | Path, columns: dict[str, np.ndarray]) -> Path:
    """A 3DGS PLY of `columns` (name -> (N,) values): x y z, f_dc_*, f_rest_*, opacity, scale_*, rot_*
    in the reference order (normals only when given); PlyError when a property is missing."""
    rest = sorted((n for n in columns if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    degree = round((1 + len(rest) // 3) ** 0.5) - 1
    names = [n for n in gaussian_property_names(degree) if n in columns or n not in ("nx", "ny", "nz")]
    missing = [n for n in names if n not in columns]
    if missing or (degree + 1) ** 2 != 1 + len(rest) // 3 or len(rest) % 3:
        raise PlyError(f"not a set of 3DGS properties (missing {', '.join(missing[:6]) or 'a whole SH degree'})")
    return _write_float_vertices(path, {n: columns[n] for n in names})


def _write_float_vertices(path: str | Path, columns: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    table = np.stack([np.asarray(c, dtype="<f4").ravel() for c in columns.values()], axis=1)
    header = ("ply\nformat binary_little_endian 1.0\ncomment written by Orbitex (Blender side)\n"
              f"element vertex {len(table)}\n" + "".join(f"property float {n}\n" for n in columns) + "end_header\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(np.ascontiguousarray(table, dtype="<f4").tobytes())
    return path
