/* The masker's visible projection in C: the bytes of a text with its complete escape
 * sequences removed, exactly ``b"".join(_ESC_RE.split(data))`` of
 * gateway/policy/masker.py (the pure-Python path, used where this module is not built).
 *
 * The grammar (one alternative per byte after ESC, so no backtracking is needed):
 *   ESC [ [0x30-0x3f]* [0x20-0x2f]* [0x40-0x7e]                      CSI
 *   ESC ] [^BEL ESC]{0,4096} (BEL | ESC \)                           OSC
 *   ESC (P|X|^|_) [^ESC]{0,4096} ESC \                               DCS, SOS, PM, APC
 *   ESC [0x20-0x2f]* [0x30-0x4f 0x51-0x57 0x59 0x5a 0x5c 0x60-0x7e]  two-byte escapes
 * An ESC that starts none of these is visible and kept, and the scan goes on after it.
 *
 * The scan keeps the GIL: it takes tens of microseconds for a 256 KiB batch, and
 * letting go of the GIL costs the event loop a thread hand-over each time (measured to
 * be expensive on these machines, docs/performance.md).
 * tests/unit/policy/test_escape_projection.py compares it with the regex on generated
 * and random inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define ESC 0x1b
#define BEL 0x07
#define STRING_MAX 4096

static int two_byte_final(unsigned char c) {
    return (c >= 0x30 && c <= 0x4f) || (c >= 0x51 && c <= 0x57) || c == 0x59 ||
           c == 0x5a || c == 0x5c || (c >= 0x60 && c <= 0x7e);
}

/* Length of the escape sequence at in[j] (an ESC), 0 when none matches there. */
static Py_ssize_t esc_len(const unsigned char *in, Py_ssize_t j, Py_ssize_t n) {
    Py_ssize_t k = j + 1, start;
    unsigned char c;
    if (k >= n)
        return 0;
    c = in[k];
    if (c == '[') {
        k++;
        while (k < n && in[k] >= 0x30 && in[k] <= 0x3f)
            k++;
        while (k < n && in[k] >= 0x20 && in[k] <= 0x2f)
            k++;
        return (k < n && in[k] >= 0x40 && in[k] <= 0x7e) ? k + 1 - j : 0;
    }
    if (c == ']') {
        start = ++k;
        while (k < n && k - start < STRING_MAX && in[k] != BEL && in[k] != ESC)
            k++;
        if (k < n && in[k] == BEL)
            return k + 1 - j;
        if (k + 1 < n && in[k] == ESC && in[k + 1] == '\\')
            return k + 2 - j;
        return 0;
    }
    if (c == 'P' || c == 'X' || c == '^' || c == '_') {
        start = ++k;
        while (k < n && k - start < STRING_MAX && in[k] != ESC)
            k++;
        return (k + 1 < n && in[k] == ESC && in[k + 1] == '\\') ? k + 2 - j : 0;
    }
    while (k < n && in[k] >= 0x20 && in[k] <= 0x2f)
        k++;
    return (k < n && two_byte_final(in[k])) ? k + 1 - j : 0;
}

static Py_ssize_t project_into(const unsigned char *in, Py_ssize_t n, unsigned char *out) {
    Py_ssize_t i = 0, o = 0, j, len;
    const unsigned char *p;
    while (i < n) {
        p = memchr(in + i, ESC, (size_t)(n - i));
        if (p == NULL) {
            memcpy(out + o, in + i, (size_t)(n - i));
            o += n - i;
            break;
        }
        j = p - in;
        memcpy(out + o, in + i, (size_t)(j - i));
        o += j - i;
        len = esc_len(in, j, n);
        if (len == 0) {
            out[o++] = ESC;
            i = j + 1;
        } else {
            i = j + len;
        }
    }
    return o;
}

static PyObject *project(PyObject *self, PyObject *arg) {
    const unsigned char *in;
    Py_ssize_t n, o;
    PyObject *out;
    (void)self;
    if (!PyBytes_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "project() takes bytes");
        return NULL;
    }
    in = (const unsigned char *)PyBytes_AS_STRING(arg);
    n = PyBytes_GET_SIZE(arg);
    if (memchr(in, ESC, (size_t)n) == NULL) {
        Py_INCREF(arg);
        return arg;
    }
    out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    o = project_into(in, n, (unsigned char *)PyBytes_AS_STRING(out));
    if (o != n && _PyBytes_Resize(&out, o) < 0)
        return NULL;
    return out;
}

static PyMethodDef methods[] = {
    {"project", project, METH_O,
     "project(data: bytes) -> bytes: data without its complete escape sequences."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gateway.policy._escapes",
    "The masker's escape-sequence projection in C (see masker.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__escapes(void) { return PyModule_Create(&module); }
