"""Numba loops behind :mod:`camo_engine.kernels.brisque`: BRISQUE's per-pixel part, row by row.

One call works on a band of rows of one grey image and streams it: each stage keeps only the last
``RING`` rows it produced (the horizontal blurs of g and g^2, the MSCN rows, the backward's
``dmu``/``ds`` rows), so the working set is a few dozen rows whatever the photo's size, and
nothing full-size is written but the result.  A band recomputes the rows its stages need from
outside it (a halo of at most seven rows each side), so every row's values, and hence every
result, are the same bit for bit whatever the banding: per-row moment sums are written per row
and added up in a fixed order by the caller.

Per-pixel values are float64 whatever the input's type: BRISQUE's local variance
``E[g^2] - E[g]^2`` loses most of float32's digits in flat areas.  The per-pixel loops are
compiled without fastmath, so a forward row and its recomputation in the backward are
identical; only the moment sums (pure reductions) may be reassociated, to vectorise.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

RING = 8  # rows kept per stage: at least the blur's 7
MAPS = 5  # the MSCN map and its horizontal, vertical and two diagonal neighbour products
SUMS = 4  # per map: count of negatives, sum of negative squares, sum of squares, sum of |x|
_REDUCE = {"reassoc", "nsz"}  # reductions only: no contraction or approximations


@njit(nogil=True, error_model="numpy", cache=True)
def _blur7(x, out, t, offset):  # pragma: no cover - numba
    """``out[j] = sum_k t[k] x[j + offset + k]`` for the 7 taps, left to right."""
    t0, t1, t2, t3, t4, t5, t6 = t[0], t[1], t[2], t[3], t[4], t[5], t[6]
    for j in range(out.shape[0]):
        i = j + offset
        out[j] = (
            t0 * x[i] + t1 * x[i + 1] + t2 * x[i + 2] + t3 * x[i + 3]
            + t4 * x[i + 4] + t5 * x[i + 5] + t6 * x[i + 6]
        )


@njit(nogil=True, error_model="numpy", cache=True)
def _hblur(src, pad, sq, mean, second, taps):  # pragma: no cover - numba
    """Zero-padded horizontal correlations of a row and of its square with the 7 ``taps``."""
    for j in range(src.shape[0]):
        v = np.float64(src[j])
        pad[j + 3] = v
        sq[j + 3] = v * v
    _blur7(pad, mean, taps, 0)
    _blur7(sq, second, taps, 0)


@njit(nogil=True, error_model="numpy", cache=True)
def _vblur(ring, t, h, zero, taps, out):  # pragma: no cover - numba
    """Row ``t`` of the vertical correlation of the rows kept in ``ring`` (zero outside the
    image: adding 0 * tap changes no sum, so every row adds its 7 terms in the same order)."""
    rows = [ring[q % RING] if 0 <= q < h else zero for q in range(t - 3, t + 4)]
    a0, a1, a2, a3, a4, a5, a6 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5], rows[6]
    t0, t1, t2, t3, t4, t5, t6 = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5], taps[6]
    for j in range(out.shape[0]):
        out[j] = (
            t0 * a0[j] + t1 * a1[j] + t2 * a2[j] + t3 * a3[j]
            + t4 * a4[j] + t5 * a5[j] + t6 * a6[j]
        )


@njit(nogil=True, error_model="numpy", cache=True)
def _mscn_row(g_row, t, h, hmean, hsecond, zero, taps, c, eps2, m, inv_d, mu, kv, s):  # pragma: no cover
    """MSCN row ``t`` into ``m[1:-1]`` (zero columns either side), from the horizontal blurs of
    rows t-3..t+3 (rows outside the image are zero: 'same' zero-padded convolution).

    For the backward it also leaves ``inv_d`` = 1/(dev + c), ``mu`` and ``kv`` = d dev / d var.
    """
    _vblur(hmean, t, h, zero, taps, mu)
    _vblur(hsecond, t, h, zero, taps, s)
    for j in range(g_row.shape[0]):
        var = s[j] - mu[j] * mu[j]
        # dev = |var|^(1/2) smoothed: (var^2 + eps^2)^(1/4), as the victim's plain formulation.
        v2 = var * var + eps2
        root = np.sqrt(v2)
        dev = np.sqrt(root)
        inv = 1.0 / (dev + c)
        m[j + 1] = (g_row[j] - mu[j]) * inv
        inv_d[j] = inv
        kv[j] = var / (2.0 * dev * root)


@njit(fastmath=_REDUCE, error_model="numpy", inline="always", cache=True)
def _add(x, n, left, square, absolute):  # pragma: no cover - numba
    """The four moment sums with one more value ``x``; branch-free (``min(x, 0)^2`` is x^2 for
    negative x), so that the row loop vectorises."""
    y = min(x, 0.0)
    return n + np.float64(x < 0), left + y * y, square + x * x, absolute + abs(x)


@njit(nogil=True, fastmath=_REDUCE, error_model="numpy", cache=True)
def _row_sums(a, b, out):  # pragma: no cover - numba
    """Moment sums of MSCN row ``a`` and of its products with itself and the next row ``b``.

    Padded columns and a missing next row are zeros: their products are 0, which adds nothing.
    """
    n0 = l0 = q0 = a0 = n1 = l1 = q1 = a1 = n2 = l2 = q2 = a2 = 0.0
    n3 = l3 = q3 = a3 = n4 = l4 = q4 = a4 = 0.0
    for j in range(a.shape[0] - 2):
        x = a[j + 1]
        n0, l0, q0, a0 = _add(x, n0, l0, q0, a0)
        n1, l1, q1, a1 = _add(x * a[j + 2], n1, l1, q1, a1)  # horizontal
        n2, l2, q2, a2 = _add(x * b[j + 1], n2, l2, q2, a2)  # vertical
        n3, l3, q3, a3 = _add(x * b[j + 2], n3, l3, q3, a3)  # main diagonal
        n4, l4, q4, a4 = _add(b[j + 1] * a[j + 2], n4, l4, q4, a4)  # anti-diagonal
    out[:] = (n0, l0, q0, a0, n1, l1, q1, a1, n2, l2, q2, a2, n3, l3, q3, a3, n4, l4, q4, a4)


@njit(nogil=True, error_model="numpy", cache=True)
def _half_row(g, i, out, taps):  # pragma: no cover - numba
    """Row ``i`` of the 1/2 downscale with a 4-tap kernel at pixel centres, borders replicated
    (cv2.resize fx=fy=0.5 INTER_CUBIC): rows then columns."""
    h, w = g.shape
    tmp = np.zeros(w)
    for k in range(4):
        y = min(max(2 * i - 1 + k, 0), h - 1)
        t = taps[k]
        for x in range(w):
            tmp[x] += t * g[y, x]
    for j in range(out.shape[0]):
        acc = 0.0
        for l in range(4):
            acc += taps[l] * tmp[min(max(2 * j - 1 + l, 0), w - 1)]
        out[j] = acc


@njit(nogil=True, error_model="numpy", cache=True)
def _half_adjoint_row(d_half, y, h, out, taps):  # pragma: no cover - numba
    """Add row ``y`` of the adjoint of the 1/2 downscale of an (h, w) image, applied to
    ``d_half``, into ``out`` (w,)."""
    h2, w2 = d_half.shape
    w = out.shape[0]
    tmp = np.zeros(w2)
    # The half rows whose 4 taps reach y (several taps at a replicated border).
    first = max((y + 1) // 2 - 2, 0)
    for i in range(first, min((y + 1) // 2 + 2, h2)):
        for k in range(4):
            if min(max(2 * i - 1 + k, 0), h - 1) == y:
                t = taps[k]
                for j in range(w2):
                    tmp[j] += t * d_half[i, j]
    for j in range(w2):
        for l in range(4):
            out[min(max(2 * j - 1 + l, 0), w - 1)] += taps[l] * tmp[j]


@njit(nogil=True, error_model="numpy", cache=True)
def _mscn_buffers(w):  # pragma: no cover - numba
    """Scratch of the MSCN stage for rows of ``w``: the zero-padded row and its square, the
    horizontal blurs of g and g^2 and the MSCN rows (zero columns either side) for ``RING``
    rows, and a zero row."""
    return (
        np.zeros(w + 6), np.zeros(w + 6), np.empty((RING, w)), np.empty((RING, w)),
        np.zeros((RING, w + 2)), np.zeros(w + 2),
    )


@njit(nogil=True, error_model="numpy", cache=True)
def _hblur_until(g, q, last, pad, sq, hmean, hsecond, taps):  # pragma: no cover - numba
    """Horizontal blurs of rows q..last (clipped to the image) into the ring; the next row."""
    while q <= min(last, g.shape[0] - 1):
        _hblur(g[q], pad, sq, hmean[q % RING], hsecond[q % RING], taps)
        q += 1
    return q


@njit(nogil=True, error_model="numpy", cache=True)
def forward_band(g, r0, r1, taps, c, eps2, row_sums, half, half_taps):  # pragma: no cover
    """Per-row moment sums (rows r0..r1-1) of the MSCN map of ``g`` and its four neighbour
    products into ``row_sums`` (h, 20); and the rows of the 1/2 downscale ``half`` whose first
    source row 2i lies in the band (``half`` of size 0: none wanted)."""
    h, w = g.shape
    pad, sq, hmean, hsecond, m, zero = _mscn_buffers(w)
    inv_d, mu, kv, s = np.empty(w), np.empty(w), np.empty(w), np.empty(w)
    h_next = max(r0 - 3, 0)
    m_end = min(r1 + 1, h)  # the row after the band is every vertical product's partner
    for t in range(r0, m_end):
        h_next = _hblur_until(g, h_next, t + 3, pad, sq, hmean, hsecond, taps)
        _mscn_row(g[t], t, h, hmean, hsecond, zero, taps, c, eps2, m[t % RING], inv_d, mu, kv, s)
        if t > r0:
            _row_sums(m[(t - 1) % RING], m[t % RING], row_sums[t - 1])
    if m_end == h and r1 == h:  # the image's last row: no row below
        _row_sums(m[(h - 1) % RING], zero, row_sums[h - 1])
    if half.shape[0] > 0:
        for i in range((r0 + 1) // 2, min((r1 + 1) // 2, half.shape[0])):
            _half_row(g, i, half[i], half_taps)


@njit(nogil=True, error_model="numpy", cache=True)
def _map_grad(x, c_left, c_square, c_abs):  # pragma: no cover - numba
    """d loss / d x of one map value x from d loss / d (sum of negative squares, sum of
    squares, sum of |x|) of its map; branch-free, and sign(0) = 0 as in torch."""
    sign = np.float64(x > 0) - np.float64(x < 0)
    return 2.0 * (x * c_square + min(x, 0.0) * c_left) + c_abs * sign


@njit(nogil=True, error_model="numpy", cache=True)
def _dm_row(p, a, n, coef, out):  # pragma: no cover - numba
    """d loss / d m for MSCN row ``a`` (between ``p`` above and ``n`` below, zero-padded), from
    every map value it enters: itself and its eight neighbour products."""
    l0, q0, b0 = coef[0, 0], coef[0, 1], coef[0, 2]
    l1, q1, b1 = coef[1, 0], coef[1, 1], coef[1, 2]
    l2, q2, b2 = coef[2, 0], coef[2, 1], coef[2, 2]
    l3, q3, b3 = coef[3, 0], coef[3, 1], coef[3, 2]
    l4, q4, b4 = coef[4, 0], coef[4, 1], coef[4, 2]
    for j in range(out.shape[0]):
        x = a[j + 1]
        d = _map_grad(x, l0, q0, b0)
        d += _map_grad(x * a[j + 2], l1, q1, b1) * a[j + 2] + _map_grad(a[j] * x, l1, q1, b1) * a[j]
        d += _map_grad(x * n[j + 1], l2, q2, b2) * n[j + 1] + _map_grad(p[j + 1] * x, l2, q2, b2) * p[j + 1]
        d += _map_grad(x * n[j + 2], l3, q3, b3) * n[j + 2] + _map_grad(p[j] * x, l3, q3, b3) * p[j]
        d += _map_grad(x * p[j + 2], l4, q4, b4) * p[j + 2] + _map_grad(n[j] * x, l4, q4, b4) * n[j]
        out[j] = d


@njit(nogil=True, error_model="numpy", cache=True)
def backward_band(g, r0, r1, taps, c, eps2, coef, d_g, d_half, half_taps):  # pragma: no cover
    """Rows r0..r1-1 of d loss / d g into ``d_g``, given ``coef`` (5, 3): d loss / d (sum of
    negative squares, sum of squares, sum of |x|) per map; plus the adjoint of the 1/2
    downscale applied to ``d_half`` (size 0: none)."""
    h, w = g.shape
    pad, sq, hmean, hsecond, m, zero = _mscn_buffers(w)
    inv_d, mu, kv = np.empty((RING, w)), np.empty((RING, w)), np.empty((RING, w))
    s = np.empty(w)
    d_m = np.empty(w)
    # d loss / d (mu, E[g^2]) and the direct term d loss / d m / D, per row.
    d_mean, d_second, direct = np.empty((RING, w)), np.empty((RING, w)), np.empty((RING, w))
    va, vb = np.zeros(w + 6), np.zeros(w + 6)
    ha, hb = np.empty(w), np.empty(w)
    extra = np.zeros(w)
    # Pulled lazily: dg row r needs d_mean/d_second rows r-3..r+3, which need m rows one
    # further out, which need the horizontal blurs of rows three further still.
    a_next = max(r0 - 3, 0)
    m_next = max(a_next - 1, 0)
    h_next = max(m_next - 3, 0)
    for r in range(r0, r1):
        while a_next <= min(r + 3, h - 1):
            while m_next <= min(a_next + 1, h - 1):
                h_next = _hblur_until(g, h_next, m_next + 3, pad, sq, hmean, hsecond, taps)
                slot = m_next % RING
                _mscn_row(
                    g[m_next], m_next, h, hmean, hsecond, zero, taps, c, eps2,
                    m[slot], inv_d[slot], mu[slot], kv[slot], s,
                )
                m_next += 1
            u = a_next
            slot = u % RING
            above = m[(u - 1) % RING] if u > 0 else zero
            below = m[(u + 1) % RING] if u + 1 < h else zero
            _dm_row(above, m[slot], below, coef, d_m)
            mrow, inv, mean, k = m[slot], inv_d[slot], mu[slot], kv[slot]
            dmean, dsecond, ddirect = d_mean[slot], d_second[slot], direct[slot]
            for j in range(w):
                # m = (g - mu) / D, D = dev(var) + c, var = E[g^2] - mu^2.
                e = d_m[j] * inv[j]
                ds = -e * mrow[j + 1] * k[j]
                ddirect[j] = e
                dsecond[j] = ds
                dmean[j] = -e - 2.0 * mean[j] * ds
            a_next += 1
        # The blurs' adjoints (the kernel is symmetric): vertical, then horizontal.
        _vblur(d_mean, r, h, zero, taps, va[3:-3])
        _vblur(d_second, r, h, zero, taps, vb[3:-3])
        _blur7(va, ha, taps, 0)
        _blur7(vb, hb, taps, 0)
        if d_half.shape[0] > 0:
            extra[:] = 0.0
            _half_adjoint_row(d_half, r, h, extra, half_taps)
        out = d_g[r]
        ddirect = direct[r % RING]
        g_row = g[r]
        for j in range(w):
            out[j] = ddirect[j] + ha[j] + 2.0 * g_row[j] * hb[j] + extra[j]


@njit(nogil=True, error_model="numpy", cache=True)
def weighted_channels(x0, x1, x2, w0, w1, w2, out):  # pragma: no cover - numba
    """``out = w0 * x0 + w1 * x1 + w2 * x2`` over (H, W) planes of any strides, each product and
    sum rounded in their type in that order: bit for bit what torch's five operations give."""
    for i in range(out.shape[0]):
        a, b, c, o = x0[i], x1[i], x2[i], out[i]
        for j in range(o.shape[0]):
            o[j] = (w0 * a[j] + w1 * b[j]) + w2 * c[j]


# A band job, one int64 row of a job table (see :func:`run_jobs`).
FORWARD, BACKWARD = 0, 1
(KIND, WIDE, FIRST, END, HEIGHT, WIDTH, HALF_HEIGHT, HALF_WIDTH,
 IMAGE, OUT, HALF, COEF, JOB_FIELDS) = range(13)


@intrinsic
def _address(typingctx, address):  # pragma: no cover - numba
    """An int64 address as a pointer, for ``carray``."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(types.int64), codegen


@intrinsic
def _claim(typingctx, counter):  # pragma: no cover - numba
    """Atomically ``counter[0] += 1``; the value before: the next job of whichever thread asks."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.atomic_rmw("add", data, ir.Constant(ir.IntType(64), 1), "monotonic")
    return types.int64(counter), codegen


@njit(nogil=True, error_model="numpy", cache=True)
def run_jobs(table, params, counter):  # pragma: no cover - numba
    """Run band jobs of ``table`` (n, JOB_FIELDS) until none is left, claiming them in order
    through ``counter`` (shared by every thread of the call; each job writes rows of its own).

    A job is a :func:`forward_band` or :func:`backward_band` call on arrays given by address:
    IMAGE (h, w) float64 if WIDE else float32; OUT the per-row sums (h, 20) float64 (forward)
    or d loss / d image, of the image's type (backward); HALF the second scale (h2, w2) float64
    (forward: written, backward: its gradient, read); COEF the (5, 3) coefficients (backward).
    ``params``: the 7 Gaussian taps, the 4 half-scale taps, c and eps^2.
    """
    taps, half_taps, c, eps2 = params[:7], params[7:11], params[11], params[12]
    k = _claim(counter)
    while k < table.shape[0]:
        job = table[k]
        h, w, r0, r1 = job[HEIGHT], job[WIDTH], job[FIRST], job[END]
        half = carray(_address(job[HALF]), (job[HALF_HEIGHT], job[HALF_WIDTH]), np.float64)
        if job[KIND] == FORWARD:
            sums = carray(_address(job[OUT]), (h, MAPS * SUMS), np.float64)
            if job[WIDE]:
                g64 = carray(_address(job[IMAGE]), (h, w), np.float64)
                forward_band(g64, r0, r1, taps, c, eps2, sums, half, half_taps)
            else:
                g32 = carray(_address(job[IMAGE]), (h, w), np.float32)
                forward_band(g32, r0, r1, taps, c, eps2, sums, half, half_taps)
        else:
            coef = carray(_address(job[COEF]), (MAPS, 3), np.float64)
            if job[WIDE]:
                g64 = carray(_address(job[IMAGE]), (h, w), np.float64)
                d64 = carray(_address(job[OUT]), (h, w), np.float64)
                backward_band(g64, r0, r1, taps, c, eps2, coef, d64, half, half_taps)
            else:
                g32 = carray(_address(job[IMAGE]), (h, w), np.float32)
                d32 = carray(_address(job[OUT]), (h, w), np.float32)
                backward_band(g32, r0, r1, taps, c, eps2, coef, d32, half, half_taps)
        k = _claim(counter)


@cfunc(types.void(types.voidptr), nopython=True, cache=True)
def run_jobs_omp(data):  # pragma: no cover - numba
    """:func:`run_jobs` as the body of an OpenMP parallel region (``GOMP_parallel(fn, data,
    ...)``): ``data`` holds the int64 (address of the table, its length, address of params,
    address of the counter)."""
    call = carray(data, 4, np.int64)
    table = carray(_address(call[0]), (call[1], JOB_FIELDS), np.int64)
    params = carray(_address(call[2]), 13, np.float64)
    counter = carray(_address(call[3]), 1, np.int64)
    run_jobs(table, params, counter)
