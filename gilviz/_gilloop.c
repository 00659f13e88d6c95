/* GIL sampling between two ticks, in C: the wake-ups gilviz spends most of its CPU on.

A Python loop of time.sleep and one pread costs about 35 us a wake-up on the machines measured,
against about 22 us for the same loop in C; this module is that loop. It is optional: without a
compiler gilviz samples in Python (capture/processes.py), with the same results.

sample(sites, period_ns, next_ns, until_ns) -> (next_ns, wake_ups, results)
  sites: a sequence of (fd of /proc/PID/mem, address of the GIL struct, shift, wrefs offset)
  Samples every site at next_ns, next_ns + period_ns, ... while that time is before until_ns,
  sleeping between (CLOCK_MONOTONIC, absolute), the GIL released throughout.
  results: per site (samples, held, contended, switch_number or None, ((holder, count), ...),
  errno or 0); a site whose read fails is sampled no more in this call.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SITES 64
#define MAX_HOLDERS 16
#define MAX_READ 128

typedef struct {
    int fd;
    uint64_t address;
    int shift, wrefs, size;
    long samples, held, contended;
    uint64_t switch_number;
    int have_switch, error;
    uint64_t holders[MAX_HOLDERS];
    long counts[MAX_HOLDERS];
    int nholders;
} Site;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void sample_site(Site *s) {
    unsigned char buf[MAX_READ];
    ssize_t got = pread(s->fd, buf, (size_t)s->size, (off_t)s->address);
    if (got != s->size) {
        s->error = got < 0 ? errno : ESRCH; /* short: the process has exited */
        return;
    }
    uint64_t holder, switch_number;
    uint32_t locked, wrefs;
    memcpy(&holder, buf + s->shift + 8, 8);
    memcpy(&locked, buf + s->shift + 16, 4);
    memcpy(&switch_number, buf + s->shift + 24, 8);
    memcpy(&wrefs, buf + s->shift + 32 + s->wrefs, 4);
    s->samples++;
    s->switch_number = switch_number;
    s->have_switch = 1;
    if (locked) {
        s->held++;
        int i;
        for (i = 0; i < s->nholders && s->holders[i] != holder; i++)
            ;
        if (i == s->nholders && s->nholders < MAX_HOLDERS) {
            s->holders[i] = holder;
            s->counts[i] = 0;
            s->nholders++;
        }
        if (i < s->nholders)
            s->counts[i]++;
    }
    if (wrefs >> 3)
        s->contended++;
}

static PyObject *sample(PyObject *self, PyObject *args) {
    PyObject *seq;
    long long period, next, until;
    if (!PyArg_ParseTuple(args, "OLLL", &seq, &period, &next, &until))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "sites must be a sequence");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_SITES || period <= 0) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "too many sites, or no period");
        return NULL;
    }
    Site sites[MAX_SITES];
    memset(sites, 0, sizeof(sites));
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long address;
        int fd, shift, wrefs;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "iKii", &fd, &address, &shift, &wrefs)) {
            Py_DECREF(fast);
            return NULL;
        }
        int size = shift + 32 + wrefs + 4;
        if (shift < 0 || wrefs < 0 || size > MAX_READ) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "a GIL layout larger than this loop reads");
            return NULL;
        }
        sites[i].fd = fd;
        sites[i].address = address;
        sites[i].shift = shift;
        sites[i].wrefs = wrefs;
        sites[i].size = size;
    }
    Py_DECREF(fast);
    long wake_ups = 0;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        if (next >= until)
            break;
        int64_t t = now_ns();
        if (t < next) {
            struct timespec at = {(time_t)(next / 1000000000LL), (long)(next % 1000000000LL)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
                ;
        }
        int sampled = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!sites[i].error) {
                sample_site(&sites[i]);
                sampled += !sites[i].error;
            }
        }
        next += period;
        t = now_ns();
        if (next <= t)
            next = t + period; /* late (a busy machine): no burst to catch up */
        if (!sampled)
            break; /* nothing left to read: Python finds out why */
        wake_ups++;
    }
    Py_END_ALLOW_THREADS
    PyObject *results = PyTuple_New(n);
    if (results == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Site *s = &sites[i];
        PyObject *holders = PyTuple_New(s->nholders);
        if (holders == NULL) {
            Py_DECREF(results);
            return NULL;
        }
        for (int h = 0; h < s->nholders; h++)
            PyTuple_SET_ITEM(holders, h, Py_BuildValue("(Kl)", (unsigned long long)s->holders[h], s->counts[h]));
        PyObject *switch_number = s->have_switch ? PyLong_FromUnsignedLongLong(s->switch_number) : Py_NewRef(Py_None);
        PyTuple_SET_ITEM(results, i, Py_BuildValue("(lllNNi)", s->samples, s->held, s->contended, switch_number,
                                                   holders, s->error));
    }
    return Py_BuildValue("(LlN)", next, wake_ups, results);
}

static PyMethodDef methods[] = {
    {"sample", sample, METH_VARARGS, "Samples GILs until a time: see the module's comment."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gilloop", "GIL sampling between ticks, in C.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__gilloop(void) { return PyModule_Create(&module); }
