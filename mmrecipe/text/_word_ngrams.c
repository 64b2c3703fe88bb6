/* Repeated word n-grams of a document: the counts of the Gopher repetition rules.
 *
 * `repeated_chars(words)` takes a document's words (a list of str) and returns nine ints, counted exactly as
 * datatrove's GopherRepetitionFilter counts them:
 * - for n = 2, 3, 4: the characters of the most frequent n-gram (words joined with one space) times its count,
 *   the first seen winning ties (datatrove's `find_top_duplicate`, `Counter.most_common(1)`); 0 under n words;
 * - for n = 5 .. 10: the characters of repeated n-grams (words joined without spaces), scanning left to right and
 *   skipping n words after each repeat, a skipped n-gram never being remembered (`find_all_duplicate`).
 * `covered_chars(words)` returns the same top 2-4-gram counts, then for n = 5 .. 10 the characters of the words
 * covered by an n-gram (a word tuple) that occurred before: Gopher's own definition (`quality_rules`).
 *
 * Words are numbered through a dict (Python's equality). Top n-grams are compared as word-number tuples: words
 * hold no whitespace, so equal space-joined strings are equal tuples. Duplicated n-grams are equal strings, which
 * different tuples can spell ("ab" "c" and "a" "bc"), so they are found by a 64-bit polynomial hash of the string
 * and then compared character by character: the counts are exact, whatever the hash collisions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BASE 1000003ULL
#define TOP_FIRST 2
#define TOP_LAST 4
#define DUP_FIRST 5
#define DUP_LAST 10
#define N_SIGNALS (DUP_LAST - TOP_FIRST + 1)

typedef struct {
    uint64_t hash;
    Py_ssize_t pos;   /* first position of the n-gram; -1: an empty slot */
    Py_ssize_t count; /* occurrences (top n-grams only) */
} Slot;

typedef struct {
    Py_ssize_t n_words;
    Py_ssize_t *ids;       /* per position: the word's number */
    Py_ssize_t *lengths;   /* per position: the word's characters */
    PyObject **vocab;      /* per number: the word (borrowed from the list) */
    uint64_t *word_hash;   /* per number: polynomial hash of the word's characters */
    uint64_t *word_power;  /* per number: BASE ** characters */
    Slot *slots;
    Py_ssize_t mask;       /* slots - 1 (a power of two minus one) */
} Doc;

static uint64_t mix(uint64_t x) { /* splitmix64's finaliser: spreads a hash over the table's low bits */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void doc_free(Doc *d) {
    PyMem_Free(d->ids);
    PyMem_Free(d->lengths);
    PyMem_Free(d->vocab);
    PyMem_Free(d->word_hash);
    PyMem_Free(d->word_power);
    PyMem_Free(d->slots);
}

static int doc_init(Doc *d, PyObject *seq) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), size = 16, vocab = 0;
    PyObject **items = PySequence_Fast_ITEMS(seq), *numbers = PyDict_New();
    memset(d, 0, sizeof(*d));
    if (numbers == NULL) return -1;
    while (size < 2 * n) size <<= 1;
    d->n_words = n;
    d->mask = size - 1;
    d->ids = PyMem_Malloc(sizeof(Py_ssize_t) * (n + 1));
    d->lengths = PyMem_Malloc(sizeof(Py_ssize_t) * (n + 1));
    d->vocab = PyMem_Malloc(sizeof(PyObject *) * (n + 1));
    d->word_hash = PyMem_Malloc(sizeof(uint64_t) * (n + 1));
    d->word_power = PyMem_Malloc(sizeof(uint64_t) * (n + 1));
    d->slots = PyMem_Malloc(sizeof(Slot) * size);
    if (!d->ids || !d->lengths || !d->vocab || !d->word_hash || !d->word_power || !d->slots) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *word = items[i], *found;
        if (!PyUnicode_Check(word)) {
            PyErr_Format(PyExc_TypeError, "words must be str, not %.100s", Py_TYPE(word)->tp_name);
            goto fail;
        }
        found = PyDict_GetItemWithError(numbers, word);
        if (found != NULL) {
            d->ids[i] = PyLong_AsSsize_t(found);
        } else {
            PyObject *number;
            if (PyErr_Occurred()) goto fail;
            number = PyLong_FromSsize_t(vocab);
            if (number == NULL || PyDict_SetItem(numbers, word, number) < 0) {
                Py_XDECREF(number);
                goto fail;
            }
            Py_DECREF(number);
            int kind = PyUnicode_KIND(word);
            const void *data = PyUnicode_DATA(word);
            Py_ssize_t chars = PyUnicode_GET_LENGTH(word);
            uint64_t h = 0, p = 1;
            for (Py_ssize_t k = 0; k < chars; k++) {
                h = h * BASE + (uint64_t)PyUnicode_READ(kind, data, k);
                p *= BASE;
            }
            d->vocab[vocab] = word;
            d->word_hash[vocab] = h;
            d->word_power[vocab] = p;
            d->ids[i] = vocab++;
        }
        d->lengths[i] = PyUnicode_GET_LENGTH(word);
    }
    Py_DECREF(numbers);
    return 0;
fail:
    Py_DECREF(numbers);
    doc_free(d);
    return -1;
}

static void clear_slots(Doc *d) {
    for (Py_ssize_t k = 0; k <= d->mask; k++) d->slots[k].pos = -1;
}

/* The slot of the n-gram (word tuple) at i: its first occurrence's, counted once more; or a new one. */
static Slot *tuple_slot(Doc *d, Py_ssize_t n, Py_ssize_t i, uint64_t hash) {
    Py_ssize_t k = (Py_ssize_t)(hash & (uint64_t)d->mask);
    for (;;) {
        Slot *s = &d->slots[k];
        if (s->pos < 0) {
            s->hash = hash;
            s->pos = i;
            s->count = 1;
            return s;
        }
        if (s->hash == hash && memcmp(d->ids + s->pos, d->ids + i, n * sizeof(Py_ssize_t)) == 0) {
            s->count++;
            return s;
        }
        k = (k + 1) & d->mask;
    }
}

/* The most frequent n-gram's characters (space-joined) times its count; ties go to the first seen. */
static long long top_chars(Doc *d, Py_ssize_t n, const uint64_t *tuple_hash) {
    Py_ssize_t last = d->n_words - n, best = -1, best_count = 0, chars;
    if (last < 0) return 0;
    clear_slots(d);
    for (Py_ssize_t i = 0; i <= last; i++) tuple_slot(d, n, i, tuple_hash[i]);
    for (Py_ssize_t k = 0; k <= d->mask; k++) {
        Slot *s = &d->slots[k];
        if (s->pos >= 0 && (s->count > best_count || (s->count == best_count && s->pos < best))) {
            best = s->pos;
            best_count = s->count;
        }
    }
    chars = n - 1;
    for (Py_ssize_t j = best; j < best + n; j++) chars += d->lengths[j];
    return (long long)chars * best_count;
}

/* Characters of the words covered by an n-gram (word tuple) that occurred before. */
static long long cover_chars(Doc *d, Py_ssize_t n, const uint64_t *tuple_hash) {
    Py_ssize_t last = d->n_words - n, covered_to = 0;
    long long chars = 0;
    if (last < 0) return 0;
    clear_slots(d);
    for (Py_ssize_t i = 0; i <= last; i++) {
        if (tuple_slot(d, n, i, tuple_hash[i])->pos == i) continue; /* the first occurrence */
        for (Py_ssize_t j = i > covered_to ? i : covered_to; j < i + n; j++) chars += d->lengths[j];
        covered_to = i + n;
    }
    return chars;
}

/* Whether words a..a+n-1 and b..b+n-1, each joined without spaces, are the same string (equal lengths given). */
static int same_string(Doc *d, Py_ssize_t a, Py_ssize_t b, Py_ssize_t n) {
    Py_ssize_t ca = 0, cb = 0, end_a = a + n, end_b = b + n;
    if (memcmp(d->ids + a, d->ids + b, n * sizeof(Py_ssize_t)) == 0) return 1;
    while (a < end_a && b < end_b) { /* equal lengths: when one side runs out, the other has only empty words left */
        PyObject *wa = d->vocab[d->ids[a]], *wb = d->vocab[d->ids[b]];
        int ka = PyUnicode_KIND(wa), kb = PyUnicode_KIND(wb);
        const void *da = PyUnicode_DATA(wa), *db = PyUnicode_DATA(wb);
        Py_ssize_t la = d->lengths[a], lb = d->lengths[b];
        while (ca < la && cb < lb) {
            if (PyUnicode_READ(ka, da, ca) != PyUnicode_READ(kb, db, cb)) return 0;
            ca++;
            cb++;
        }
        if (ca == la) {
            a++;
            ca = 0;
        }
        if (cb == lb) {
            b++;
            cb = 0;
        }
    }
    return 1;
}

/* Characters of repeated n-grams (joined without spaces), skipping n words after each repeat. */
static long long skip_ahead_chars(Doc *d, Py_ssize_t n, const uint64_t *string_hash, const Py_ssize_t *gram_chars) {
    Py_ssize_t last = d->n_words - n, i = 0;
    long long repeated = 0;
    if (last < 0) return 0;
    clear_slots(d);
    while (i <= last) {
        Py_ssize_t k = (Py_ssize_t)(mix(string_hash[i]) & (uint64_t)d->mask);
        int seen = 0;
        for (;;) {
            Slot *s = &d->slots[k];
            if (s->pos < 0) {
                s->hash = string_hash[i];
                s->pos = i;
                break;
            }
            if (s->hash == string_hash[i] && gram_chars[s->pos] == gram_chars[i] && same_string(d, s->pos, i, n)) {
                seen = 1;
                break;
            }
            k = (k + 1) & d->mask;
        }
        if (seen) {
            repeated += gram_chars[i];
            i += n;
        } else {
            i++;
        }
    }
    return repeated;
}

/* The nine counts of `repeated_chars` (datatrove: skip-ahead string n-grams) or of `covered_chars`. */
static PyObject *counts(PyObject *words, int datatrove) {
    Doc d;
    PyObject *seq = PySequence_Fast(words, "words must be a sequence of str"), *out = NULL;
    uint64_t *tuple_hash = NULL, *string_hash = NULL;
    Py_ssize_t *gram_chars = NULL, n_words;
    long long signals[N_SIGNALS];
    if (seq == NULL) return NULL;
    if (doc_init(&d, seq) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    n_words = d.n_words;
    tuple_hash = PyMem_Malloc(sizeof(uint64_t) * (n_words + 1));
    string_hash = PyMem_Malloc(sizeof(uint64_t) * (n_words + 1));
    gram_chars = PyMem_Malloc(sizeof(Py_ssize_t) * (n_words + 1));
    if (!tuple_hash || !string_hash || !gram_chars) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_words; i++) {
        tuple_hash[i] = mix((uint64_t)d.ids[i] + 1);
        string_hash[i] = d.word_hash[d.ids[i]];
        gram_chars[i] = d.lengths[i];
    }
    for (Py_ssize_t n = TOP_FIRST; n <= DUP_LAST; n++) {
        /* tuple_hash[i]: the word tuple at i; string_hash[i] and gram_chars[i]: that n-gram joined without spaces
           (h(ab) = h(a) * BASE^|b| + h(b)). Each extends the (n-1)-gram's by one word, where this n needs it. */
        int tuples = n <= TOP_LAST || !datatrove, strings = datatrove;
        for (Py_ssize_t i = 0; i + n <= n_words; i++) {
            Py_ssize_t w = d.ids[i + n - 1];
            if (tuples) tuple_hash[i] = mix(tuple_hash[i] * BASE + (uint64_t)w + 1);
            if (strings) string_hash[i] = string_hash[i] * d.word_power[w] + d.word_hash[w];
            gram_chars[i] += d.lengths[i + n - 1];
        }
        if (n <= TOP_LAST) {
            signals[n - TOP_FIRST] = top_chars(&d, n, tuple_hash);
        } else if (datatrove) {
            signals[n - TOP_FIRST] = skip_ahead_chars(&d, n, string_hash, gram_chars);
        } else {
            signals[n - TOP_FIRST] = cover_chars(&d, n, tuple_hash);
        }
    }
    out = Py_BuildValue("(LLLLLLLLL)", signals[0], signals[1], signals[2], signals[3], signals[4], signals[5],
                        signals[6], signals[7], signals[8]); /* N_SIGNALS values */
done:
    PyMem_Free(tuple_hash);
    PyMem_Free(string_hash);
    PyMem_Free(gram_chars);
    doc_free(&d);
    Py_DECREF(seq);
    return out;
}

static PyObject *repeated_chars(PyObject *module, PyObject *words) { return counts(words, 1); }

static PyObject *covered_chars(PyObject *module, PyObject *words) { return counts(words, 0); }

static PyMethodDef methods[] = {
    {"repeated_chars", repeated_chars, METH_O,
     "repeated_chars(words) -> (top 2-, 3-, 4-gram chars, duplicated 5- .. 10-gram chars), as datatrove's Gopher "
     "repetition filter counts them."},
    {"covered_chars", covered_chars, METH_O,
     "covered_chars(words) -> (top 2-, 3-, 4-gram chars, chars of words covered by repeated 5- .. 10-grams)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_word_ngrams",
                                    "Repeated word n-grams of a document: the counts of the Gopher repetition rules.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__word_ngrams(void) { return PyModule_Create(&module); }
