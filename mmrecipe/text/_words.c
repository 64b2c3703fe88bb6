/* A text's words from its whitespace chunks' remembered tokens: the hot loop of `mmrecipe.text.words.words`.
 *
 * `chunk_words(text, memo, pairs)` splits `text` as `str.split()` does, looks every chunk up in `memo` (a
 * mapping whose missing keys tokenize themselves, `words._ChunkMemo`) and concatenates the chunks' tokens. It
 * returns (tokens, starts, ends, one_space):
 * - `starts`: the positions i where `pairs[tokens[i]]` holds tokens[i + 1] (where a special-case pattern may begin);
 * - `ends`: one past each chunk's last token;
 * - `one_space`: bytes, 1 where the whitespace after a chunk is one space (" ") and nothing else, else 0;
 * `ends` and `one_space` are None when `starts` is empty.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *chunk_words(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *text, *memo, *pairs, *tokens = NULL, *starts = NULL, *ends = NULL, *spaces = NULL, *out = NULL;
    Py_ssize_t *chunk_ends = NULL, n_chunks = 0, length, i = 0;
    char *one_space = NULL;
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "chunk_words takes 3 arguments (%zd given)", nargs);
    text = args[0];
    memo = args[1];
    pairs = args[2];
    if (!PyUnicode_Check(text)) {
        return PyErr_Format(PyExc_TypeError, "text must be str, not %.100s", Py_TYPE(text)->tp_name);
    }
    if (!PyDict_Check(pairs)) {
        return PyErr_Format(PyExc_TypeError, "pairs must be a dict, not %.100s", Py_TYPE(pairs)->tp_name);
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    length = PyUnicode_GET_LENGTH(text);
    tokens = PyList_New(0);
    starts = PyList_New(0);
    chunk_ends = PyMem_Malloc(sizeof(Py_ssize_t) * (length / 2 + 1)); /* chunks are separated: at most (n+1)/2 */
    one_space = PyMem_Malloc(length / 2 + 1);
    if (tokens == NULL || starts == NULL || chunk_ends == NULL || one_space == NULL) {
        if (chunk_ends == NULL || one_space == NULL) PyErr_NoMemory();
        goto done;
    }
    while (i < length) {
        Py_ssize_t start;
        PyObject *chunk, *found;
        while (i < length && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) i++;
        if (i == length) break;
        start = i;
        while (i < length && !Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) i++;
        chunk = PyUnicode_Substring(text, start, i);
        if (chunk == NULL) goto done;
        found = PyObject_GetItem(memo, chunk);
        Py_DECREF(chunk);
        if (found == NULL) goto done;
        if (!PyTuple_Check(found)) {
            PyErr_Format(PyExc_TypeError, "memo values must be tuples, not %.100s", Py_TYPE(found)->tp_name);
            Py_DECREF(found);
            goto done;
        }
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(found); k++) {
            if (PyList_Append(tokens, PyTuple_GET_ITEM(found, k)) < 0) {
                Py_DECREF(found);
                goto done;
            }
        }
        Py_DECREF(found);
        one_space[n_chunks] = i < length && PyUnicode_READ(kind, data, i) == ' ' &&
                              (i + 1 == length || !Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i + 1)));
        chunk_ends[n_chunks++] = PyList_GET_SIZE(tokens);
    }
    for (Py_ssize_t k = 0; k + 1 < PyList_GET_SIZE(tokens); k++) {
        PyObject *seconds = PyDict_GetItemWithError(pairs, PyList_GET_ITEM(tokens, k)), *at;
        int hit;
        if (seconds == NULL) {
            if (PyErr_Occurred()) goto done;
            continue;
        }
        hit = PySequence_Contains(seconds, PyList_GET_ITEM(tokens, k + 1));
        if (hit < 0) goto done;
        if (!hit) continue;
        at = PyLong_FromSsize_t(k);
        if (at == NULL || PyList_Append(starts, at) < 0) {
            Py_XDECREF(at);
            goto done;
        }
        Py_DECREF(at);
    }
    if (PyList_GET_SIZE(starts) == 0) {
        ends = Py_NewRef(Py_None);
        spaces = Py_NewRef(Py_None);
    } else {
        spaces = PyBytes_FromStringAndSize(one_space, n_chunks);
        if (spaces == NULL) goto done;
        ends = PyList_New(n_chunks);
        for (Py_ssize_t k = 0; ends != NULL && k < n_chunks; k++) {
            PyObject *end = PyLong_FromSsize_t(chunk_ends[k]);
            if (end == NULL) {
                Py_CLEAR(ends);
                break;
            }
            PyList_SET_ITEM(ends, k, end);
        }
        if (ends == NULL) goto done;
    }
    out = PyTuple_Pack(4, tokens, starts, ends, spaces);
done:
    PyMem_Free(chunk_ends);
    PyMem_Free(one_space);
    Py_XDECREF(spaces);
    Py_XDECREF(tokens);
    Py_XDECREF(starts);
    Py_XDECREF(ends);
    return out;
}

static PyMethodDef methods[] = {
    {"chunk_words", (PyCFunction)(void (*)(void))chunk_words, METH_FASTCALL,
     "chunk_words(text, memo, pairs) -> (tokens, pattern starts, chunk ends or None, one-space gaps or None)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_words",
                                    "A text's words from its whitespace chunks' remembered tokens.", -1, methods};

PyMODINIT_FUNC PyInit__words(void) { return PyModule_Create(&module); }
