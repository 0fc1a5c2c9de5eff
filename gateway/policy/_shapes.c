/* The masker's digit-shape gate in C: whether a text contains one of a pattern's
 * "shapes", exactly ``any(s in data.translate(_DIGIT_CLASS) for s in shapes)`` of
 * gateway/policy/masker.py (the pure-Python path, used where this module is not built).
 * The digit class maps 0-9 to '0', keeps ' ' and '-', and maps every other byte to '.';
 * a shape is made of '0', ' ' and '-' and starts with at least one '0'.
 *
 * Every occurrence of a shape starts on a run of L digits (L: the shortest run of '0'
 * any shape starts with), so the scan looks only at such runs: with SSE2 (every x86-64)
 * it finds them 16 positions at a time from the digit mask of 32 bytes, elsewhere digit
 * by digit. On output with few such runs (random bytes: one in ~2.3 million positions)
 * it barely stops. The credit-card pattern's shapes have L = 4.
 *
 * Two optional conditions make it a sharper gate for a pattern that promises them (the
 * card pattern: every match it keeps starts with an issuer digit 2-6 that is not
 * preceded by a letter, digit or '_'): ``first``, the bytes an occurrence may start
 * with, and ``edge``, that the byte before it is none of [A-Za-z0-9_]. Log lines with
 * millisecond timestamps (13-digit runs starting with 1) then pass no more.
 *
 * The scan keeps the GIL (microseconds for a batch; see _escapes.c).
 * tests/unit/policy/test_digit_shapes.py compares it with the translation.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_SHAPES 16

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int is_word(unsigned char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int same_class(unsigned char c, unsigned char shape) {
    return shape == '0' ? is_digit(c) : c == shape;
}

static int shape_at(const unsigned char *in, Py_ssize_t n, Py_ssize_t s,
                    const unsigned char *shape, Py_ssize_t len) {
    Py_ssize_t k;
    if (s + len > n)
        return 0;
    for (k = 0; k < len; k++)
        if (!same_class(in[s + k], shape[k]))
            return 0;
    return 1;
}

#if defined(__SSE2__)
#include <emmintrin.h>

/* bit i set: in[i] is a digit (0 <= i < 16) */
static inline unsigned digit_bits(const unsigned char *in) {
    const __m128i v = _mm_loadu_si128((const __m128i *)in);
    const __m128i ge0 = _mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1));
    const __m128i le9 = _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1));
    return (unsigned)_mm_movemask_epi8(_mm_and_si128(ge0, le9));
}
#endif

/* The start of the first run of at least ``lead`` digits at or after ``from`` (``from``
 * is 0 or follows a non-digit, so no such run begins before it and reaches it), or n.
 * With SSE2, 16 positions at a time: a run of ``lead`` digits starts at bit i when bits
 * i .. i+lead-1 of the digit mask of 32 bytes are set. */
static Py_ssize_t next_run(const unsigned char *in, Py_ssize_t n, Py_ssize_t from,
                           Py_ssize_t lead) {
    Py_ssize_t q = from;
#if defined(__SSE2__)
    if (lead <= 16 && q + 32 <= n) {
        uint32_t lo = digit_bits(in + q), hi, m, r;
        Py_ssize_t have;
        for (; q + 32 <= n; q += 16) {
            hi = digit_bits(in + q + 16);
            m = lo | (hi << 16);
            lo = hi;
            if (lead == 4) { /* the card pattern's */
                r = m & (m >> 1);
                r &= r >> 2;
            } else {
                r = m; /* bit i: in[q+i .. q+i+have-1] are digits */
                for (have = 1; have * 2 <= lead; have *= 2)
                    r &= r >> have;
                if (have < lead)
                    r &= r >> (lead - have);
            }
            r &= 0xFFFFu;
            if (r) /* the first run of lead digits starting in this block: a run that
                    * began before q was found by the last block */
                return q + __builtin_ctz(r);
        }
    }
#endif
    while (q < n) { /* the rest (or no SSE2): digit by digit */
        if (!is_digit(in[q])) {
            q++;
            continue;
        }
        Py_ssize_t e = q;
        while (e < n && is_digit(in[e]))
            e++;
        if (e - q >= lead)
            return q;
        q = e;
    }
    return n;
}

static int scan(const unsigned char *in, Py_ssize_t n, const unsigned char **shapes,
                const Py_ssize_t *lens, Py_ssize_t m, Py_ssize_t lead,
                const unsigned char *first, Py_ssize_t nfirst, int edge) {
    Py_ssize_t s = 0, e, start, i;
    while ((s = next_run(in, n, s, lead)) < n) {
        e = s;
        while (e < n && is_digit(in[e]))
            e++;
        for (start = s; start + lead <= e; start++) {
            if (edge && start > 0 && is_word(in[start - 1]))
                continue; /* inside the run: only its start can be an edge */
            if (nfirst && memchr(first, in[start], (size_t)nfirst) == NULL)
                continue;
            for (i = 0; i < m; i++)
                if (shape_at(in, n, start, shapes[i], lens[i]))
                    return 1;
        }
        s = e; /* in[e] is not a digit (or e == n) */
    }
    return 0;
}

static PyObject *has_shape(PyObject *self, PyObject *args) {
    PyObject *data, *seq, *item;
    const unsigned char *shapes[MAX_SHAPES];
    const char *first = "";
    Py_ssize_t lens[MAX_SHAPES], m, i, k, lead = PY_SSIZE_T_MAX, run, nfirst = 0;
    int edge = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "SO!|y#p:has_shape", &data, &PyTuple_Type, &seq, &first,
                          &nfirst, &edge))
        return NULL;
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "has_shape() takes bytes");
        return NULL;
    }
    m = PyTuple_GET_SIZE(seq);
    if (m < 1 || m > MAX_SHAPES) {
        PyErr_SetString(PyExc_ValueError, "has_shape() takes 1 to 16 shapes");
        return NULL;
    }
    for (i = 0; i < m; i++) {
        item = PyTuple_GET_ITEM(seq, i);
        if (!PyBytes_CheckExact(item)) {
            PyErr_SetString(PyExc_TypeError, "a shape is bytes");
            return NULL;
        }
        shapes[i] = (const unsigned char *)PyBytes_AS_STRING(item);
        lens[i] = PyBytes_GET_SIZE(item);
        for (k = 0; k < lens[i]; k++)
            if (shapes[i][k] != '0' && shapes[i][k] != ' ' && shapes[i][k] != '-') {
                PyErr_SetString(PyExc_ValueError, "a shape is made of '0', ' ' and '-'");
                return NULL;
            }
        for (run = 0; run < lens[i] && shapes[i][run] == '0'; run++)
            ;
        if (run == 0) {
            PyErr_SetString(PyExc_ValueError, "a shape starts with '0'");
            return NULL;
        }
        if (run < lead)
            lead = run;
    }
    if (scan((const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), shapes,
             lens, m, lead, (const unsigned char *)first, nfirst, edge))
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"has_shape", has_shape, METH_VARARGS,
     "has_shape(data: bytes, shapes: tuple[bytes, ...], first: bytes = b'', edge: bool = "
     "False) -> bool: whether a shape is in the digit-class translation of data (starting "
     "with a byte of first, when given; not after [A-Za-z0-9_], with edge)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gateway.policy._shapes",
    "The masker's digit-shape gate in C (see masker.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__shapes(void) { return PyModule_Create(&module); }
