/* GIL sampling between two ticks, and the reading of every thread at a tick, in C: the
wake-ups gilviz spends most of its CPU on, and the per-thread work that grows with threads.

A Python loop of time.sleep and one pread costs about 35 us a wake-up on the machines measured,
against about 22 us for the same loop in C; this module is that loop. It is optional: without a
compiler gilviz samples in Python (capture/processes.py), with the same results.

sample(sites, period_ns, next_ns, until_ns) -> (next_ns, wake_ups, results)
  sites: a sequence of (fd of /proc/PID/mem, address of the GIL struct, shift, wrefs offset)
  Samples every site at next_ns, next_ns + period_ns, ... while that time is before until_ns,
  sleeping between (CLOCK_MONOTONIC, absolute), the GIL released throughout.
  results: per site (samples, held, contended, switch_number or None, ((holder, count), ...),
  errno or 0); a site whose read fails is sampled no more in this call.

read_threads(threads, reads, read_every, idle_from, stat_after_ns, stat_every, reading_type) -> readings
  probes/threads.py's ThreadProbe.read, from the list of its open threads on: the same files
  read in the same cases, the same readings (reading_type, a NamedTuple) and the same updates
  of each thread's `last` and `unchanged`; a thread whose files fail to read (it ended) is left
  out, as there. The Python loop stays beside it, for where this is not built.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdlib.h>
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


/* ------------------------------------------------------------------ read_threads */

static PyObject *s_tid, *s_sched, *s_stat, *s_sys, *s_last, *s_unchanged, *s_running;

static long long attr_ll(PyObject *obj, PyObject *name, int *ok) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        *ok = 0;
        return 0;
    }
    long long out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (out == -1 && PyErr_Occurred())
        *ok = 0;
    return out;
}

static int set_unchanged(PyObject *th, long long n) {
    PyObject *u = PyLong_FromLongLong(n);
    if (u == NULL)
        return -1;
    int r = PyObject_SetAttr(th, s_unchanged, u);
    Py_DECREF(u);
    return r;
}

/* A reading: made by tuple.__new__ itself (a NamedTuple is a tuple subclass; tuple's constructor
   sets up what a bare allocation would not, such as 3.14's cached hash). */
static PyObject *new_reading(PyTypeObject *type, PyObject **items) {
    PyObject *plain = PyTuple_New(8);
    if (plain == NULL)
        return NULL;
    for (int i = 0; i < 8; i++)
        PyTuple_SET_ITEM(plain, i, Py_NewRef(items[i]));
    PyObject *args = PyTuple_Pack(1, plain);
    Py_DECREF(plain);
    if (args == NULL)
        return NULL;
    PyObject *r = PyTuple_Type.tp_new(type, args, NULL);
    Py_DECREF(args);
    return r;
}

/* The last reading with moved = False: itself if it says so already. */
static PyObject *unmoved(PyTypeObject *type, PyObject *last) {
    if (PyTuple_GET_ITEM(last, 7) == Py_False)
        return Py_NewRef(last);
    PyObject *items[8];
    for (int i = 0; i < 8; i++)
        items[i] = PyTuple_GET_ITEM(last, i);
    items[7] = Py_False;
    return new_reading(type, items);
}

static ssize_t read_file(int fd, char *buf, size_t size) {
    ssize_t got = pread(fd, buf, size - 1, 0);
    if (got >= 0)
        buf[got] = 0;
    return got;
}

/* schedstat: "on_ns runq_ns slices\n" */
static int parse_schedstat(const char *buf, unsigned long long out[3]) {
    const char *p = buf;
    for (int i = 0; i < 3; i++) {
        char *end;
        while (*p == ' ')
            p++;
        if (*p < '0' || *p > '9')
            return 0;
        errno = 0;
        out[i] = strtoull(p, &end, 10);
        if (errno || end == p)
            return 0;
        p = end;
    }
    return 1;
}

/* stat: the state letter (field 3) and the CPU last run on (field 39); the name may hold spaces and ')' */
static int parse_stat(const char *buf, ssize_t len, char *state, long *cpu) {
    const char *close = NULL;
    for (ssize_t i = len - 1; i >= 0; i--)
        if (buf[i] == ')') {
            close = buf + i;
            break;
        }
    if (close == NULL || close + 2 >= buf + len)
        return 0;
    const char *p = close + 2;
    *state = *p;
    for (int field = 0; field < 36; field++) { /* to the 37th field after the name: the processor */
        while (*p && *p != ' ')
            p++;
        while (*p == ' ')
            p++;
        if (!*p)
            return 0;
    }
    char *end;
    errno = 0;
    *cpu = strtol(p, &end, 10);
    return !errno && end != p;
}

static PyObject *read_threads(PyObject *self, PyObject *args) {
    PyObject *threads, *read_every;
    long long reads, idle_from, stat_after_ns, stat_every;
    PyTypeObject *type;
    if (!PyArg_ParseTuple(args, "O!LO!LLLO!", &PyList_Type, &threads, &reads, &PyTuple_Type, &read_every, &idle_from,
                          &stat_after_ns, &stat_every, &PyType_Type, &type))
        return NULL;
    Py_ssize_t steps = PyTuple_GET_SIZE(read_every);
    if (steps < 1 || stat_every < 1 || !PyType_IsSubtype(type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ValueError, "no read table, no stat period, or a reading type that is no tuple");
        return NULL;
    }
    long long every[64];
    if (steps > 64) {
        PyErr_SetString(PyExc_ValueError, "a read table of more than 64 entries");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < steps; i++) {
        every[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(read_every, i));
        if (every[i] < 1) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a read table entry under 1");
            return NULL;
        }
    }
    Py_ssize_t n = PyList_GET_SIZE(threads);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    char buf[1024];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *th = PyList_GET_ITEM(threads, i);
        int ok = 1;
        long long tid = attr_ll(th, s_tid, &ok);
        long long unchanged = ok ? attr_ll(th, s_unchanged, &ok) : 0;
        if (!ok)
            goto fail;
        PyObject *last = PyObject_GetAttr(th, s_last);
        if (last == NULL)
            goto fail;
        /* borrowed from here on: the thread holds it until its `last` is set, at the end */
        Py_DECREF(last);
        if (last == Py_None)
            last = NULL;
        else if (!PyTuple_Check(last) || PyTuple_GET_SIZE(last) != 8) {
            PyErr_SetString(PyExc_TypeError, "a thread's last reading is not a reading");
            goto fail;
        }
        long last_cpu = 0;
        unsigned long long last_sched[3] = {0, 0, 0};
        if (last != NULL) {
            last_cpu = PyLong_AsLong(PyTuple_GET_ITEM(last, 2));
            for (int k = 0; k < 3; k++)
                last_sched[k] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(last, 3 + k));
            if (PyErr_Occurred())
                goto fail;
        }
        PyObject *reading = NULL;
        if (last != NULL && unchanged >= idle_from) {
            long long period = every[unchanged < steps - 1 ? unchanged : steps - 1];
            if ((reads + tid) % period) {
                /* asleep a while: read less often; what it did meanwhile shows at its next read */
                reading = unmoved(type, last);
                if (reading == NULL || set_unchanged(th, unchanged + 1) < 0 || PyList_Append(out, reading) < 0) {
                    Py_XDECREF(reading);
                    goto fail;
                }
                Py_DECREF(reading);
                continue;
            }
        }
        long long sched_fd = attr_ll(th, s_sched, &ok);
        long long stat_fd = ok ? attr_ll(th, s_stat, &ok) : 0;
        long long sys_fd = ok ? attr_ll(th, s_sys, &ok) : 0;
        if (!ok)
            goto fail;
        unsigned long long sched[3];
        if (read_file((int)sched_fd, buf, 128) < 0 || !parse_schedstat(buf, sched))
            continue; /* the thread ended while being read */
        if (last != NULL && last_sched[0] == sched[0] && last_sched[1] == sched[1] && last_sched[2] == sched[2]) {
            reading = unmoved(type, last);
            if (reading == NULL || set_unchanged(th, unchanged + 1) < 0) {
                Py_XDECREF(reading);
                goto fail;
            }
        } else {
            if (set_unchanged(th, 0) < 0) /* (before the reads that may fail, as in Python) */
                goto fail;
            PyObject *syscall;
            if (sys_fd >= 0) {
                ssize_t got = read_file((int)sys_fd, buf, 257);
                if (got < 0)
                    continue;
                syscall = PyUnicode_DecodeUTF8(buf, got, NULL);
                if (syscall == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    PyErr_Clear(); /* not the kernel's text: left out, as Python's ValueError leaves it */
                    continue;
                }
            } else
                syscall = Py_NewRef(s_running);
            if (syscall == NULL)
                goto fail;
            char state;
            long cpu = 0;
            if (last == NULL || (long long)(sched[0] - last_sched[0]) >= stat_after_ns || reads % stat_every == 0) {
                ssize_t got = read_file((int)stat_fd, buf, sizeof(buf));
                if (got < 0 || !parse_stat(buf, got, &state, &cpu)) {
                    Py_DECREF(syscall);
                    continue;
                }
            } else {
                /* on a CPU only briefly (a GIL waiter's wake-up): its core is what it was, and
                   whether it is running now the syscall file tells as well */
                state = PyUnicode_Tailmatch(syscall, s_running, 0, 7, -1) == 1 ? 'R' : 'S';
                cpu = last_cpu;
            }
            PyObject *items[8];
            items[0] = PyLong_FromLongLong(tid);
            items[1] = PyUnicode_FromStringAndSize(&state, 1);
            items[2] = PyLong_FromLong(cpu);
            items[3] = PyLong_FromUnsignedLongLong(sched[0]);
            items[4] = PyLong_FromUnsignedLongLong(sched[1]);
            items[5] = PyLong_FromUnsignedLongLong(sched[2]);
            items[6] = syscall;
            items[7] = Py_True;
            int bad = 0;
            for (int k = 0; k < 7; k++)
                bad |= items[k] == NULL;
            reading = bad ? NULL : new_reading(type, items);
            for (int k = 0; k < 7; k++)
                Py_XDECREF(items[k]);
            if (reading == NULL)
                goto fail;
        }
        int bad = PyObject_SetAttr(th, s_last, reading) < 0 || PyList_Append(out, reading) < 0;
        Py_DECREF(reading);
        if (bad)
            goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"sample", sample, METH_VARARGS, "Samples GILs until a time: see the module's comment."},
    {"read_threads", read_threads, METH_VARARGS, "Reads every thread of one process: see the module's comment."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gilloop", "GIL sampling between ticks, and reading threads at a tick, in C.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__gilloop(void) {
    if (!(s_tid = PyUnicode_InternFromString("tid")) || !(s_sched = PyUnicode_InternFromString("sched")) ||
        !(s_stat = PyUnicode_InternFromString("stat")) || !(s_sys = PyUnicode_InternFromString("sys")) ||
        !(s_last = PyUnicode_InternFromString("last")) || !(s_unchanged = PyUnicode_InternFromString("unchanged")) ||
        !(s_running = PyUnicode_InternFromString("running")))
        return NULL;
    return PyModule_Create(&module);
}
