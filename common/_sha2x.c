/* SHA-256 with the x86 SHA extensions, and two streams hashed at once.
 *
 * A recording's writer hashes most bytes twice: the chunk chain (over the compressed
 * payload) and ``output_sha256`` (over the raw output). Each SHA-256 stream is a chain
 * of dependent rounds; one core can run the rounds of a second, independent stream in
 * the gaps. On an AMD EPYC of these machines one stream runs at ~0.64 ms/MiB (as
 * OpenSSL), two interleaved at ~0.38 ms/MiB each.
 *
 * ``Sha256`` is a hash object (update, copy, digest, hexdigest, like hashlib's) that can
 * also *defer* immutable data (bytes, or a read-only memoryview of bytes): it keeps a
 * reference and hashes it later. ``settle(a, b)`` hashes all that ``a`` deferred and,
 * the two streams' rounds interleaved, as much of what ``b`` deferred as pairs with it;
 * the rest of ``b`` waits for the next settle (a partner that runs ahead now and then
 * still pairs). Anything else (update, copy, digest) first hashes all the object
 * deferred, so the result is always exactly SHA-256 of the bytes given, in the order
 * given. At most MAX_DEFERRED bytes wait in one object.
 *
 * ``accelerated`` is False where the CPU has no SHA extensions (or this is not x86-64):
 * common/sha256.py then uses hashlib. tests/unit/common/test_sha256x.py compares it
 * with hashlib.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEFERRED (8 * 1024 * 1024)
#define RELEASE_GIL_BYTES 4096

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHANI 1
#include <cpuid.h>
#include <immintrin.h>

static const uint32_t K256[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define TGT __attribute__((target("sha,sse4.1,ssse3")))

/* the state h[0..7] as the two registers the instructions use (ABEF, CDGH) */
TGT static inline void to_regs(const uint32_t h[8], __m128i *s0, __m128i *s1) {
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);
    __m128i u = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B);
    *s0 = _mm_alignr_epi8(t, u, 8);
    *s1 = _mm_blend_epi16(u, t, 0xF0);
}

TGT static inline void from_regs(__m128i s0, __m128i s1, uint32_t h[8]) {
    __m128i t = _mm_shuffle_epi32(s0, 0x1B);
    s1 = _mm_shuffle_epi32(s1, 0xB1);
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(t, s1, 0xF0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(s1, t, 8));
}

#define BSWAP_MASK _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)
#define LOAD(P, OFF) _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((P) + (OFF))), mask)

/* four rounds with message words M (rounds 4i..4i+3) */
#define RND4(S0, S1, M, i)                                                          \
    do {                                                                            \
        __m128i t_ = _mm_add_epi32((M), _mm_load_si128((const __m128i *)&K256[4 * (i)])); \
        S1 = _mm_sha256rnds2_epu32(S1, S0, t_);                                     \
        S0 = _mm_sha256rnds2_epu32(S0, S1, _mm_shuffle_epi32(t_, 0x0E));            \
    } while (0)

/* the next four message words into M0, from the sixteen in M0..M3 */
#define SCHED(M0, M1, M2, M3)                                                       \
    M0 = _mm_sha256msg2_epu32(                                                      \
        _mm_add_epi32(_mm_sha256msg1_epu32(M0, M1), _mm_alignr_epi8(M3, M2, 4)), M3)

TGT static void blocks_x1(uint32_t h[8], const uint8_t *p, size_t n) {
    __m128i s0, s1, m0, m1, m2, m3, a0, a1;
    const __m128i mask = BSWAP_MASK;
    to_regs(h, &s0, &s1);
    for (; n; n--, p += 64) {
        a0 = s0;
        a1 = s1;
        m0 = LOAD(p, 0);
        m1 = LOAD(p, 16);
        m2 = LOAD(p, 32);
        m3 = LOAD(p, 48);
        RND4(s0, s1, m0, 0);
        RND4(s0, s1, m1, 1);
        RND4(s0, s1, m2, 2);
        RND4(s0, s1, m3, 3);
        for (int i = 4; i < 16; i += 4) {
            SCHED(m0, m1, m2, m3); RND4(s0, s1, m0, i);
            SCHED(m1, m2, m3, m0); RND4(s0, s1, m1, i + 1);
            SCHED(m2, m3, m0, m1); RND4(s0, s1, m2, i + 2);
            SCHED(m3, m0, m1, m2); RND4(s0, s1, m3, i + 3);
        }
        s0 = _mm_add_epi32(s0, a0);
        s1 = _mm_add_epi32(s1, a1);
    }
    from_regs(s0, s1, h);
}

/* n blocks of p into g and n blocks of q into h, the two streams' rounds interleaved */
TGT static void blocks_x2(uint32_t g[8], const uint8_t *p, uint32_t h[8], const uint8_t *q,
                          size_t n) {
    __m128i s0, s1, m0, m1, m2, m3, a0, a1;
    __m128i t0, t1, n0, n1, n2, n3, b0, b1;
    const __m128i mask = BSWAP_MASK;
    to_regs(g, &s0, &s1);
    to_regs(h, &t0, &t1);
    for (; n; n--, p += 64, q += 64) {
        a0 = s0; a1 = s1; b0 = t0; b1 = t1;
        m0 = LOAD(p, 0); n0 = LOAD(q, 0);
        m1 = LOAD(p, 16); n1 = LOAD(q, 16);
        m2 = LOAD(p, 32); n2 = LOAD(q, 32);
        m3 = LOAD(p, 48); n3 = LOAD(q, 48);
        RND4(s0, s1, m0, 0); RND4(t0, t1, n0, 0);
        RND4(s0, s1, m1, 1); RND4(t0, t1, n1, 1);
        RND4(s0, s1, m2, 2); RND4(t0, t1, n2, 2);
        RND4(s0, s1, m3, 3); RND4(t0, t1, n3, 3);
        for (int i = 4; i < 16; i += 4) {
            SCHED(m0, m1, m2, m3); SCHED(n0, n1, n2, n3);
            RND4(s0, s1, m0, i); RND4(t0, t1, n0, i);
            SCHED(m1, m2, m3, m0); SCHED(n1, n2, n3, n0);
            RND4(s0, s1, m1, i + 1); RND4(t0, t1, n1, i + 1);
            SCHED(m2, m3, m0, m1); SCHED(n2, n3, n0, n1);
            RND4(s0, s1, m2, i + 2); RND4(t0, t1, n2, i + 2);
            SCHED(m3, m0, m1, m2); SCHED(n3, n0, n1, n2);
            RND4(s0, s1, m3, i + 3); RND4(t0, t1, n3, i + 3);
        }
        s0 = _mm_add_epi32(s0, a0); s1 = _mm_add_epi32(s1, a1);
        t0 = _mm_add_epi32(t0, b0); t1 = _mm_add_epi32(t1, b1);
    }
    from_regs(s0, s1, g);
    from_regs(t0, t1, h);
}

static int cpu_has_sha(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!(c & bit_SSE4_1) || !(c & bit_SSSE3))
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1; /* CPUID.(EAX=7,ECX=0):EBX.SHA[bit 29] */
}
#else
#define HAVE_SHANI 0
static void blocks_x1(uint32_t h[8], const uint8_t *p, size_t n) { (void)h; (void)p; (void)n; }
static void blocks_x2(uint32_t g[8], const uint8_t *p, uint32_t h[8], const uint8_t *q, size_t n) {
    (void)g; (void)p; (void)h; (void)q; (void)n;
}
static int cpu_has_sha(void) { return 0; }
#endif

static int accelerated = 0;

static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* a deferred piece: a reference that keeps [pos, end) of its buffer alive */
typedef struct {
    PyObject *owner; /* bytes, or a read-only memoryview of bytes */
    const uint8_t *data;
    Py_ssize_t pos, end;
} Piece;

typedef struct {
    PyObject_HEAD
    uint32_t h[8];
    uint8_t buf[64];
    Py_ssize_t buflen;
    uint64_t total; /* bytes hashed or deferred */
    Piece *pieces;  /* deferred, in order: [first, count) */
    Py_ssize_t first, count, cap;
    Py_ssize_t deferred; /* bytes waiting */
    int busy;            /* a call is hashing with the GIL released */
} Sha256;

static PyTypeObject Sha256Type;

/* the next run of whole blocks of s: from its partial block once that is full, else
 * straight from its first piece. Bytes that do not make a whole block go to the
 * partial block. No Python object is touched (runs without the GIL). */
static size_t next_run(Sha256 *s, const uint8_t **at) {
    while (s->first < s->count) {
        Piece *pc = &s->pieces[s->first];
        Py_ssize_t left = pc->end - pc->pos;
        if (s->buflen) {
            Py_ssize_t take = 64 - s->buflen;
            if (take > left)
                take = left;
            memcpy(s->buf + s->buflen, pc->data + pc->pos, (size_t)take);
            s->buflen += take;
            pc->pos += take;
            if (pc->pos == pc->end)
                s->first++;
            if (s->buflen == 64) {
                *at = s->buf;
                return 1;
            }
            continue;
        }
        if (left >= 64) {
            *at = pc->data + pc->pos;
            return (size_t)(left / 64);
        }
        if (left > 0) {
            memcpy(s->buf, pc->data + pc->pos, (size_t)left);
            s->buflen = left;
        }
        pc->pos = pc->end;
        s->first++;
    }
    return 0;
}

static void consumed(Sha256 *s, const uint8_t *at, size_t n) {
    if (at == s->buf) {
        s->buflen = 0;
        return;
    }
    Piece *pc = &s->pieces[s->first];
    pc->pos += (Py_ssize_t)(n * 64);
    if (pc->pos == pc->end)
        s->first++;
}

/* hash everything a deferred, and what b (may be NULL) deferred while a has blocks to
 * pair with: b's excess stays deferred for the next settle (a partner that runs ahead
 * now and then still pairs). Without the GIL. */
static void hash_deferred(Sha256 *a, Sha256 *b) {
    for (;;) {
        const uint8_t *pa = NULL, *pb = NULL;
        size_t na = next_run(a, &pa);
        if (!na)
            return;
        size_t nb = b ? next_run(b, &pb) : 0;
        if (nb) {
            size_t k = na < nb ? na : nb;
            blocks_x2(a->h, pa, b->h, pb, k);
            consumed(a, pa, k);
            consumed(b, pb, k);
        } else {
            blocks_x1(a->h, pa, na);
            consumed(a, pa, na);
        }
    }
}

/* drop the references of the pieces hashed (with the GIL); the rest move to the front */
static void release_pieces(Sha256 *s) {
    Py_ssize_t done = s->first, left = 0;
    for (Py_ssize_t i = 0; i < done; i++)
        Py_DECREF(s->pieces[i].owner);
    if (done < s->count)
        memmove(s->pieces, s->pieces + done, (size_t)(s->count - done) * sizeof(Piece));
    s->count -= done;
    s->first = 0;
    for (Py_ssize_t i = 0; i < s->count; i++)
        left += s->pieces[i].end - s->pieces[i].pos;
    s->deferred = left;
}

static int claim(Sha256 *s) {
    if (s->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Sha256 object used by two threads at once");
        return -1;
    }
    return 0;
}

/* a: all it deferred; b (may be NULL): what pairs with a, the rest stays deferred */
static int settle_pair(Sha256 *a, Sha256 *b) {
    if (claim(a) < 0 || (b && claim(b) < 0))
        return -1;
    Py_ssize_t work = a->deferred + (b ? b->deferred : 0);
    if (!a->deferred)
        return 0;
    a->busy = 1;
    if (b)
        b->busy = 1;
    if (work >= RELEASE_GIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        hash_deferred(a, b);
        Py_END_ALLOW_THREADS
    } else {
        hash_deferred(a, b);
    }
    a->busy = 0;
    release_pieces(a);
    if (b) {
        b->busy = 0;
        release_pieces(b);
    }
    return 0;
}

static int push(Sha256 *s, PyObject *owner, const uint8_t *data, Py_ssize_t pos, Py_ssize_t end) {
    if (s->count == s->cap) {
        Py_ssize_t cap = s->cap ? s->cap * 2 : 16;
        Piece *p = PyMem_Realloc(s->pieces, (size_t)cap * sizeof(Piece));
        if (!p) {
            PyErr_NoMemory();
            return -1;
        }
        s->pieces = p;
        s->cap = cap;
    }
    Py_INCREF(owner);
    s->pieces[s->count++] = (Piece){owner, data, pos, end};
    s->deferred += end - pos;
    s->total += (uint64_t)(end - pos);
    return 0;
}

/* hash now: what was deferred first, then data[start:end] (end < 0: to its end; the
 * GIL released for big data) */
static int hash_now(Sha256 *s, PyObject *obj, Py_ssize_t start, Py_ssize_t end) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return -1;
    int rc = -1;
    if (end < 0)
        end = view.len;
    if (start < 0 || end > view.len || start > end) {
        PyErr_SetString(PyExc_ValueError, "start/end out of range");
        goto done;
    }
    if (settle_pair(s, NULL) < 0)
        goto done;
    rc = 0;
    if (end == start)
        goto done;
    /* the data as a temporary piece, hashed like deferred ones */
    if (push(s, obj, view.buf, start, end) < 0 || settle_pair(s, NULL) < 0)
        rc = -1;
done:
    PyBuffer_Release(&view);
    return rc;
}

/* the bytes object behind obj when obj is bytes or a read-only contiguous memoryview
 * of bytes: its data cannot change, and a reference to that bytes object (not to the
 * memoryview, which its owner may release) keeps the data alive */
static PyObject *immutable_view(PyObject *obj, const uint8_t **data, Py_ssize_t *len) {
    if (PyBytes_CheckExact(obj)) {
        *data = (const uint8_t *)PyBytes_AS_STRING(obj);
        *len = PyBytes_GET_SIZE(obj);
        return obj;
    }
    if (PyMemoryView_Check(obj)) {
        Py_buffer *b = PyMemoryView_GET_BUFFER(obj);
        if (b->obj && PyBytes_CheckExact(b->obj) && b->readonly && b->buf &&
            PyBuffer_IsContiguous(b, 'C') && b->itemsize == 1) {
            *data = (const uint8_t *)b->buf;
            *len = b->len;
            return b->obj;
        }
    }
    return NULL;
}

static PyObject *Sha256_update(Sha256 *self, PyObject *obj) {
    if (hash_now(self, obj, 0, -1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Sha256_defer(Sha256 *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "defer(data, start=0, end=None)");
        return NULL;
    }
    PyObject *obj = args[0];
    Py_ssize_t start = 0, end = -1;
    if (nargs > 1 && (start = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    if (nargs > 2 && args[2] != Py_None &&
        (end = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    const uint8_t *data;
    Py_ssize_t len;
    PyObject *owner = accelerated ? immutable_view(obj, &data, &len) : NULL;
    if (owner == NULL) {
        if (hash_now(self, obj, start, end) < 0) /* mutable data is hashed at once */
            return NULL;
        Py_RETURN_NONE;
    }
    if (end < 0)
        end = len;
    if (start < 0 || end > len || start > end) {
        PyErr_SetString(PyExc_ValueError, "defer: start/end out of range");
        return NULL;
    }
    if (claim(self) < 0)
        return NULL;
    if (end == start)
        Py_RETURN_NONE;
    if (self->deferred + (end - start) > MAX_DEFERRED && settle_pair(self, NULL) < 0)
        return NULL;
    if (push(self, owner, data, start, end) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *new_hash(void) {
    Sha256 *s = PyObject_New(Sha256, &Sha256Type);
    if (!s)
        return NULL;
    memcpy(s->h, IV, sizeof IV);
    s->buflen = 0;
    s->total = 0;
    s->pieces = NULL;
    s->first = s->count = s->cap = 0;
    s->deferred = 0;
    s->busy = 0;
    return (PyObject *)s;
}

static PyObject *Sha256_copy(Sha256 *self, PyObject *Py_UNUSED(ignored)) {
    if (settle_pair(self, NULL) < 0)
        return NULL;
    Sha256 *c = (Sha256 *)new_hash();
    if (!c)
        return NULL;
    memcpy(c->h, self->h, sizeof self->h);
    memcpy(c->buf, self->buf, sizeof self->buf);
    c->buflen = self->buflen;
    c->total = self->total;
    return (PyObject *)c;
}

static int finish(Sha256 *self, uint8_t out[32]) {
    if (settle_pair(self, NULL) < 0)
        return -1;
    uint32_t h[8];
    uint8_t tail[128];
    memcpy(h, self->h, sizeof h);
    Py_ssize_t n = self->buflen;
    memcpy(tail, self->buf, (size_t)n);
    tail[n++] = 0x80;
    Py_ssize_t blocks = n <= 56 ? 1 : 2;
    memset(tail + n, 0, (size_t)(blocks * 64 - n));
    uint64_t bits = self->total * 8;
    for (int i = 0; i < 8; i++)
        tail[blocks * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
    blocks_x1(h, tail, (size_t)blocks);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
    return 0;
}

static PyObject *Sha256_digest(Sha256 *self, PyObject *Py_UNUSED(ignored)) {
    uint8_t out[32];
    if (finish(self, out) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

static PyObject *Sha256_hexdigest(Sha256 *self, PyObject *Py_UNUSED(ignored)) {
    static const char hex[] = "0123456789abcdef";
    uint8_t out[32];
    char text[64];
    if (finish(self, out) < 0)
        return NULL;
    for (int i = 0; i < 32; i++) {
        text[2 * i] = hex[out[i] >> 4];
        text[2 * i + 1] = hex[out[i] & 15];
    }
    return PyUnicode_FromStringAndSize(text, 64);
}

static void Sha256_dealloc(Sha256 *self) {
    for (Py_ssize_t i = 0; i < self->count; i++)
        Py_DECREF(self->pieces[i].owner);
    PyMem_Free(self->pieces);
    PyObject_Free(self);
}

static PyObject *Sha256_get_deferred(Sha256 *self, void *closure) {
    (void)closure;
    return PyLong_FromSsize_t(self->deferred);
}

static PyMethodDef Sha256_methods[] = {
    {"update", (PyCFunction)Sha256_update, METH_O, "Hash data (after what was deferred)."},
    {"defer", (PyCFunction)(void (*)(void))Sha256_defer, METH_FASTCALL,
     "defer(data, start=0, end=None): hash data[start:end] at the next settle. "
     "Only bytes (or a read-only memoryview of bytes) wait; other data is hashed now."},
    {"copy", (PyCFunction)Sha256_copy, METH_NOARGS, "A copy of the hash state."},
    {"digest", (PyCFunction)Sha256_digest, METH_NOARGS, "The 32-byte digest so far."},
    {"hexdigest", (PyCFunction)Sha256_hexdigest, METH_NOARGS, "The digest in hex."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Sha256_getset[] = {
    {"deferred", (getter)Sha256_get_deferred, NULL, "bytes waiting for a settle", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject Sha256Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "common._sha2x.Sha256",
    .tp_basicsize = sizeof(Sha256),
    .tp_dealloc = (destructor)Sha256_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SHA-256 that can defer immutable data to hash two streams at once.",
    .tp_methods = Sha256_methods,
    .tp_getset = Sha256_getset,
};

static PyObject *mod_new(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (!accelerated) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no SHA extensions (use hashlib)");
        return NULL;
    }
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "sha256(data=b'')");
        return NULL;
    }
    PyObject *s = new_hash();
    if (s && nargs == 1 && hash_now((Sha256 *)s, args[0], 0, -1) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    return s;
}

static PyObject *mod_settle(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &Sha256Type) ||
        !PyObject_TypeCheck(args[1], &Sha256Type)) {
        PyErr_SetString(PyExc_TypeError, "settle(a, b): two Sha256 objects");
        return NULL;
    }
    Sha256 *a = (Sha256 *)args[0], *b = (Sha256 *)args[1];
    if (settle_pair(a, a == b ? NULL : b) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"sha256", (PyCFunction)(void (*)(void))mod_new, METH_FASTCALL, "A new Sha256 object."},
    {"settle", (PyCFunction)(void (*)(void))mod_settle, METH_FASTCALL,
     "settle(a, b): hash what a deferred and, interleaved with it, as much as pairs of "
     "what b deferred (b's excess waits for the next settle)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_sha2x", NULL, -1, module_methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sha2x(void) {
    if (PyType_Ready(&Sha256Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m)
        return NULL;
    accelerated = HAVE_SHANI && cpu_has_sha();
    if (PyModule_AddObject(m, "accelerated", PyBool_FromLong(accelerated)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
