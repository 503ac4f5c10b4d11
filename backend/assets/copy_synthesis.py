"""Exemplar fill of an image's holes by copy maps (symmetry transfer and offset synthesis).

Each label is a copy map: a pixel takes the colour of another pixel of the same image, found
by a mirror (x -> 2 x0 - x, y -> 2 y0 - y) or a shift (x + dx, y + dy; x wraps around, the
image being a full turn of a radial map). Shifts are the image's dominant offsets (He and Sun,
"Statistics of patch offsets for image completion", 2012): the offsets under which the known
part best matches itself, measured for all offsets at once by masked FFT correlation. The label
of each hole pixel is chosen by iterated conditional modes on a unary cost (0 for a symmetry,
the offset's mismatch for a shift; infinite when the source is itself unknown) plus the seam cost
of neighbouring labels (how much the two copies disagree where they meet, also against known
neighbours, so a copy continues the known border instead of leaving a step). Holes whose
sources are holes are filled in later rounds from what earlier rounds filled.

OpenCV's exemplar inpainting (`cv2.xphoto.inpaint`, INPAINT_SHIFTMAP) is the same idea, but
takes 23 s on a 256 x 512 image on the 2-core machine, has no mirror labels and does not wrap;
labels are chosen here at a coarse scale and replayed at the full one, which keeps it to
a few seconds at 512 x 1024.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BIG = 1e6
SEAM_WEIGHT = 1.0
LABEL_CHANGE = 0.02  # on top of the seam cost: fewer, larger copied pieces (squared colour units)
ICM_ITERATIONS = 5
ROUNDS = 5
COARSE_HEIGHT = 128


@dataclass(frozen=True)
class CopyMap:
    kind: str  # "mirror_x" | "mirror_y" | "shift"
    a: float  # mirror_x: x0 (axis column, pixel units); mirror_y: y0; shift: dx
    b: float = 0.0  # shift: dy
    symmetry: bool = False  # a geometric symmetry of the surface (reported as transfer), else synthesis
    prior: float = 0.0  # unary cost when its source is known

    def scaled(self, fx: float, fy: float) -> "CopyMap":
        """The same map on an image resized by fx across and fy down."""
        a = self.a * (fy if self.kind == "mirror_y" else fx)
        return CopyMap(self.kind, a, self.b * fy, self.symmetry, self.prior)

    def sources(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source row, column and validity (inside the image) of every pixel."""
        y, x = np.mgrid[0:height, 0:width]
        if self.kind == "mirror_x":
            sx, sy = np.rint(2 * self.a - 1 - x).astype(np.int64) % width, y
        elif self.kind == "mirror_y":
            sx, sy = x, np.rint(2 * self.a - 1 - y).astype(np.int64)
        else:
            sx, sy = (x + int(round(self.a))) % width, y + int(round(self.b))
        ok = (sy >= 0) & (sy < height)
        return np.clip(sy, 0, height - 1), sx, ok


def dominant_shifts(image: np.ndarray, known: np.ndarray, count: int, horizontal_only: bool = False,
                    min_overlap: float = 0.05) -> list[tuple[int, int, float]]:
    """The `count` offsets (dx, dy, mean squared mismatch) under which the known image best
    matches itself, at least an eighth of the smaller side apart from each other and from 0."""
    h, w = known.shape
    m = known.astype(np.float64)
    ph = 2 * h  # pad rows (no wrap vertically); columns wrap (a full turn)

    def corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        fa = np.fft.rfft2(a, s=(ph, w))
        fb = np.fft.rfft2(b, s=(ph, w))
        return np.fft.irfft2(np.conj(fa) * fb, s=(ph, w))  # out[dy, dx] = sum_p a(p) b(p + d)

    overlap = corr(m, m)
    err = np.zeros_like(overlap)
    for c in range(image.shape[2]):
        v = image[..., c].astype(np.float64) * m
        v2 = v * image[..., c]
        err += corr(v2, m) + corr(m, v2) - 2 * corr(v, v)
    total = m.sum()
    valid = overlap > max(min_overlap * total, 16)
    mse = np.where(valid, err / np.maximum(overlap, 1), np.inf)
    dy = np.arange(ph)
    dy = np.where(dy < ph // 2, dy, dy - ph)
    dx = np.arange(w)
    dx = np.where(dx <= w // 2, dx, dx - w)
    DY, DX = np.meshgrid(dy, dx, indexing="ij")
    mse[np.abs(DY) >= h] = np.inf
    if horizontal_only:
        mse[DY != 0] = np.inf
    gap = max(2, min(h, w) // 8)
    mse[(np.abs(DX) < gap) & (np.abs(DY) < gap)] = np.inf
    found: list[tuple[int, int, float]] = []
    for _ in range(count):
        k = int(np.argmin(mse))
        if not np.isfinite(mse.flat[k]):
            break
        i, j = np.unravel_index(k, mse.shape)
        found.append((int(DX[i, j]), int(DY[i, j]), float(mse[i, j])))
        near_x = np.minimum(np.abs(DX - DX[i, j]), w - np.abs(DX - DX[i, j])) < gap
        mse[near_x & (np.abs(DY - DY[i, j]) < gap)] = np.inf
    return found


def choose_labels(image: np.ndarray, known: np.ndarray, need: np.ndarray, maps: list[CopyMap],
                  rounds: int = ROUNDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill `need & ~known` pixels round by round. Returns the filled image, the label of every
    pixel (-1: known or left unfilled) and the round it was filled in (-1 likewise)."""
    h, w = known.shape
    img = image.astype(np.float32).copy()
    known = known.copy()
    label = np.full((h, w), -1, dtype=np.int64)
    when = np.full((h, w), -1, dtype=np.int64)
    src = [m.sources(h, w) for m in maps]
    prior = np.array([m.prior for m in maps], dtype=np.float32)
    for r in range(rounds):
        todo = need & ~known
        if not todo.any() or not maps:
            break
        # copies and their validity under every label: (K, H, W, C), (K, H, W)
        S = np.stack([img[sy, sx] for sy, sx, _ in src])
        V = np.stack([ok & known[sy, sx] for sy, sx, ok in src])
        cost = np.where(V, prior[:, None, None], BIG)
        cur = np.where(todo, np.argmin(cost, 0), -1)
        fillable = todo & (cost.min(0) < BIG)
        if not fillable.any():
            break
        for _ in range(ICM_ITERATIONS):
            total = cost.copy()
            for axis, step in ((0, 1), (0, -1), (1, 1), (1, -1)):
                total += SEAM_WEIGHT * _seam(S, V, img, known, cur, fillable, axis, step)
            new = np.argmin(total, 0)
            changed = fillable & (new != cur)
            cur = np.where(fillable, new, cur)
            if not changed.any():
                break
        ys, xs = np.nonzero(fillable)
        lab = cur[ys, xs]
        ok = V[lab, ys, xs]
        ys, xs, lab = ys[ok], xs[ok], lab[ok]
        img[ys, xs] = S[lab, ys, xs]
        known[ys, xs] = True
        label[ys, xs] = lab
        when[ys, xs] = r
    return img, label, when


def _seam(S: np.ndarray, V: np.ndarray, img: np.ndarray, known: np.ndarray, cur: np.ndarray,
          active: np.ndarray, axis: int, step: int) -> np.ndarray:
    """(K, H, W): for each label at p, the disagreement with the neighbour q = p + step along
    `axis` (its current label, or its own colour when known): |S_k(p) - S_l(p)|^2 + |S_k(q) - S_l(q)|^2,
    each term counted where both copies exist."""
    k = S.shape[0]
    h, w = known.shape
    wrap = axis == 1  # columns wrap around the turn
    q_known = np.roll(known, -step, axis=axis)
    q_lab = np.roll(cur, -step, axis=axis)
    inside = np.ones((h, w), dtype=bool)
    if not wrap:
        if step > 0:
            inside[-step:, :] = False
        else:
            inside[:-step, :] = False
    out = np.zeros((k, h, w), dtype=np.float32)
    has_label = ~q_known & (q_lab >= 0) & inside
    # q known: it is its own copy (identity); the term at q compares S_k(q) with the image there
    S_q = np.roll(S, -step, axis=axis + 1)
    V_q = np.roll(V, -step, axis=axis + 1)
    img_q = np.roll(img, -step, axis=axis)
    d_known = ((S_q - img_q[None]) ** 2).sum(-1)
    term_known = np.where(V_q, d_known, 0.0)
    lab = np.clip(q_lab, 0, k - 1)
    yy, xx = np.mgrid[0:h, 0:w]
    S_l_p = S[lab, yy, xx]  # the neighbour's copy evaluated at p
    V_l_p = V[lab, yy, xx]
    S_l_q = S_q[lab, yy, xx]  # and at q
    V_l_q = V_q[lab, yy, xx]
    term_lab = (np.where(V & V_l_p[None], ((S - S_l_p[None]) ** 2).sum(-1), 0.0)
                + np.where(V_q & V_l_q[None], ((S_q - S_l_q[None]) ** 2).sum(-1), 0.0))
    out += np.where((q_known & inside & active)[None], term_known, 0.0)
    term_lab = term_lab + LABEL_CHANGE * (np.arange(k)[:, None, None] != q_lab[None])
    out += np.where((has_label & active)[None], term_lab, 0.0)
    return out


def synthesize(image: np.ndarray, known: np.ndarray, need: np.ndarray, maps: list[CopyMap],
               coarse_height: int = COARSE_HEIGHT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill the `need & ~known` pixels of `image` (H, W, C). Labels are chosen on a copy at most
    `coarse_height` rows high and replayed at full size. Returns the image, the filled mask and
    the label per pixel (-1: known or unfilled)."""
    import cv2

    h, w = known.shape
    factor = min(1.0, coarse_height / h)
    if factor >= 1.0:
        out, label, _ = choose_labels(image, known, need, maps)
        return poisson_blend(out, known, label, maps), label >= 0, label
    ch, cw = max(8, int(round(h * factor))), max(16, int(round(w * factor)))
    fx, fy = cw / w, ch / h
    weight = cv2.resize(known.astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA)
    small = cv2.resize(image.astype(np.float32) * known[..., None], (cw, ch), interpolation=cv2.INTER_AREA)
    small_known = weight > 0.5
    small = small / np.maximum(weight, 1e-6)[..., None]
    small_need = cv2.resize(need.astype(np.uint8), (cw, ch), interpolation=cv2.INTER_NEAREST) > 0
    small_need |= cv2.resize((need & ~known).astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA) > 0
    coarse_maps = [m.scaled(fx, fy) for m in maps]
    coarse, small_label, small_when = choose_labels(small, small_known, small_need & ~small_known, coarse_maps)
    # replay at full size: each hole pixel takes its coarse pixel's label, in the coarse round order
    label = cv2.resize(small_label.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    when = cv2.resize(small_when.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    todo = need & ~known
    label = np.where(todo, label, -1)
    when = np.where(todo & (label >= 0), when, -1)
    out = image.astype(np.float32).copy()
    have = known.copy()
    coarse_up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    srcs = [m.sources(h, w) for m in maps]
    for r in range(int(when.max()) + 1 if when.size else 0):
        for k, (sy, sx, ok) in enumerate(srcs):
            sel = (when == r) & (label == k)
            if not sel.any():
                continue
            ys, xs = np.nonzero(sel)
            py, px = sy[ys, xs], sx[ys, xs]
            good = ok[ys, xs] & have[py, px]
            out[ys[good], xs[good]] = out[py[good], px[good]]
            # a fine source pixel the coarse scale thought known but is not: the coarse colour
            out[ys[~good], xs[~good]] = coarse_up[ys[~good], xs[~good]]
        have |= when == r
    label = np.where(have & todo, label, -1)
    # level the copies at the coarse scale (the levelling offsets are smooth) and add the
    # offsets at full size: a full-size solve costs seconds
    small_filled = small_label >= 0
    offset = poisson_blend(coarse, small_known, small_label, coarse_maps) - coarse
    weight = cv2.resize(small_filled.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    up = cv2.resize(offset * small_filled[..., None], (w, h), interpolation=cv2.INTER_LINEAR)
    up = up / np.maximum(weight, 1e-6)[..., None]
    copied = label >= 0
    out[copied] = np.clip(out[copied] + up[copied] * (weight[copied] > 1e-3)[:, None], 0.0, 1.0)
    return out, have & todo | known, label


def poisson_blend(image: np.ndarray, known: np.ndarray, label: np.ndarray, maps: list[CopyMap]) -> np.ndarray:
    """Re-solve the copied pixels (label >= 0) so their gradients are the copies' own while the
    known pixels around them stay fixed (Poisson image editing, Perez et al. 2003): a copy taken
    from a brighter or darker part of the surface is levelled into its new surroundings, and
    where two copies meet, the gradient across is the mean of both copies' (no step)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    h, w = known.shape
    filled = label >= 0
    if not filled.any():
        return image
    index = np.full((h, w), -1, dtype=np.int64)
    ys, xs = np.nonzero(filled)
    n = len(ys)
    index[ys, xs] = np.arange(n)
    defined = filled | known
    srcs = [m.sources(h, w) for m in maps]

    def copy_value(lab: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """image at the source of (y, x) under map `lab` (per pixel), and whether it is defined."""
        val = np.zeros((len(y), image.shape[2]), dtype=np.float64)
        ok = np.zeros(len(y), dtype=bool)
        for k, (sy, sx, inside) in enumerate(srcs):
            sel = np.nonzero(lab == k)[0]
            if len(sel) == 0:
                continue
            py, px = sy[y[sel], x[sel]], sx[y[sel], x[sel]]
            good = inside[y[sel], x[sel]] & defined[py, px]
            val[sel] = image[py, px]
            ok[sel] = good
        return val, ok

    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.zeros(n)]
    diag = np.zeros(n)
    b = np.zeros((n, image.shape[2]))
    lp = label[ys, xs]
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        qy, qx = ys + dy, (xs + dx) % w
        inside = (qy >= 0) & (qy < h)
        qy = np.clip(qy, 0, h - 1)
        q_def = inside & defined[qy, qx]
        e = np.nonzero(q_def)[0]
        py_, px_, qy_, qx_ = ys[e], xs[e], qy[e], qx[e]
        # the gradient p - q of p's copy, and of q's copy when q is copied too
        a_p, ok_ap = copy_value(lp[e], py_, px_)
        a_q, ok_aq = copy_value(lp[e], qy_, qx_)
        g = a_p - a_q
        ok = ok_ap & ok_aq
        lq = label[qy_, qx_]
        other = (lq >= 0) & (lq != lp[e])
        if other.any():
            o = np.nonzero(other)[0]
            b_p, ok_bp = copy_value(lq[o], py_[o], px_[o])
            b_q, ok_bq = copy_value(lq[o], qy_[o], qx_[o])
            ok_b = ok_bp & ok_bq
            g_b = b_p - b_q
            mean = ok[o] & ok_b
            g[o[mean]] = 0.5 * (g[o[mean]] + g_b[mean])
            only_b = ~ok[o] & ok_b
            g[o[only_b]] = g_b[only_b]
            ok[o] |= ok_b
        fallback = image[py_, px_].astype(np.float64) - image[qy_, qx_]
        g = np.where(ok[:, None], g, fallback)
        diag += np.bincount(e, minlength=n)
        np.add.at(b, e, g)
        q_is_filled = filled[qy_, qx_]
        f = np.nonzero(q_is_filled)[0]
        rows.append(e[f])
        cols.append(index[qy_[f], qx_[f]])
        vals.append(-np.ones(len(f)))
        k = np.nonzero(~q_is_filled)[0]  # known neighbour: fixed value
        np.add.at(b, e[k], image[qy_[k], qx_[k]].astype(np.float64))
    vals[0] = diag
    A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    # a weak pull towards the copy itself: pieces with no known pixel around them (and pixels with
    # no defined neighbour) keep their copy's level instead of leaving the system singular
    eps = 1e-3 + (diag == 0)
    A = A + coo_matrix((eps, (np.arange(n), np.arange(n))), shape=(n, n)).tocsc()
    b += eps[:, None] * image[ys, xs]
    solved = spsolve(A, b)
    out = image.copy()
    out[ys, xs] = np.clip(solved.reshape(n, -1), 0.0, 1.0)
    return out
