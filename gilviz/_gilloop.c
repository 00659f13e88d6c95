/* GIL sampling between two ticks, and the reading of every thread at a tick, in C: the
wake-ups gilviz spends most of its CPU on, and the per-thread work that grows with threads.

A Python loop of time.sleep and one pread costs about 35 us a wake-up on the machines measured,
against about 22 us for the same loop in C; this module is that loop. It is optional: without a
compiler gilviz samples in Python (capture/processes.py), with the same results.

sample(sites, period_ns, next_ns, until_ns[, at_until]) -> (next_ns, wake_ups, results, at_tick)
  sites: a sequence of (fd of /proc/PID/mem, address of the GIL struct, shift, wrefs offset[,
  flags]); flags (3.15+): the addresses of some threads' (holds_gil, gil_requested) ints, read
  before each sample: one asking and not holding makes the sample contended, as a sleeper does.
  Samples every site at next_ns, next_ns + period_ns, ... while that time is before until_ns,
  sleeping between (CLOCK_MONOTONIC, absolute), the GIL released throughout; with at_until, then
  sleeps till until_ns and samples every site once more (the wake-up of the tick due then, not
  counted in wake_ups: the tick's reads follow at once, with a reading of the GIL as of them),
  at_tick then 1, and that sample takes its place in the schedule: next_ns is a period after it
  (not a second sample as soon as the tick's work is done, which no wake-up of its own paid for).
  results: per site (samples, held, contended, switch_number or None, ((holder, count), ...),
  errno or 0, turns); a site whose read fails is sampled no more in this call. turns: the GIL's
  last holder, held or not, at the first and latest samples, how many samples found another than
  the sample before, and every one found (None: more than 16): (first, last, changes, (holder,
  ...) or None); None where no sample was read.

read_threads(threads, reads, read_every, idle_from, stat_after_ns, stat_every, reading_type[, parked,
             waits, waits_every, carried]) -> readings
  probes/threads.py's ThreadProbe.read, from the list of its open threads on: the same files
  read in the same cases, the same readings (reading_type, a NamedTuple) and the same updates
  of each thread's `last` and `unchanged`, and of the set `parked`: the threads whose syscall
  text read last began with one of `waits`, which the caller knows are in that wait still (it
  takes out those that may have left it) and whose syscall file is then not read but one read
  in waits_every; and of the set `carried`: those whose text was not read at a read that found
  them moved, whose file is read at the next read that finds them still (a reading moved into
  the wait it says, where that is another); a thread whose files fail to read (it ended) is left
  out, as there. The Python loop stays beside it, for where this is not built.

frame_tops(fd, tstates, layout) -> tops
  probes/frames.py's walk to each thread's innermost Python frame, for all of a tick's threads in
  one call (below).
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
#define MAX_FLAGS 8

typedef struct {
    int fd;
    uint64_t address;
    int shift, wrefs, size;
    long samples, held, contended;
    uint64_t switch_number, last_holder, first_holder; /* (holders at the latest and first samples, held or not) */
    long transitions; /* samples whose last holder was not the sample before's */
    uint64_t seen[MAX_HOLDERS]; /* every last holder read, held or not */
    int have_switch, error, nseen, seen_over;
    uint64_t holders[MAX_HOLDERS];
    long counts[MAX_HOLDERS];
    int nholders;
    uint64_t flags[MAX_FLAGS];
    int nflags;
} Site;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Some thread asks for the GIL and does not hold it (a failed read: none, as in Python). */
static int asking(const Site *s) {
    for (int i = 0; i < s->nflags; i++) {
        int32_t pair[2];
        if (pread(s->fd, pair, sizeof(pair), (off_t)s->flags[i]) != (ssize_t)sizeof(pair))
            return 0;
        if (pair[1] && !pair[0])
            return 1;
    }
    return 0;
}

static void sample_site(Site *s) {
    unsigned char buf[MAX_READ];
    int asks = s->nflags ? asking(s) : 0;
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
    if (!s->samples)
        s->first_holder = holder;
    else if (holder != s->last_holder)
        s->transitions++;
    int k;
    for (k = 0; k < s->nseen && s->seen[k] != holder; k++)
        ;
    if (k == s->nseen) {
        if (s->nseen < MAX_HOLDERS)
            s->seen[s->nseen++] = holder;
        else
            s->seen_over = 1;
    }
    s->samples++;
    s->switch_number = switch_number;
    s->last_holder = holder;
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
    if ((wrefs >> 3) || asks)
        s->contended++;
}

static PyObject *sample(PyObject *self, PyObject *args) {
    PyObject *seq;
    long long period, next, until;
    int at_until = 0;
    if (!PyArg_ParseTuple(args, "OLLL|p", &seq, &period, &next, &until, &at_until))
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
        PyObject *flags = NULL;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "iKii|O", &fd, &address, &shift, &wrefs, &flags)) {
            Py_DECREF(fast);
            return NULL;
        }
        if (flags != NULL) {
            PyObject *f = PySequence_Fast(flags, "flags must be a sequence");
            if (f == NULL || PySequence_Fast_GET_SIZE(f) > MAX_FLAGS) {
                Py_XDECREF(f);
                Py_DECREF(fast);
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "more thread flags than this loop reads");
                return NULL;
            }
            for (Py_ssize_t j = 0; j < PySequence_Fast_GET_SIZE(f); j++) {
                sites[i].flags[j] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(f, j));
                if (PyErr_Occurred()) {
                    Py_DECREF(f);
                    Py_DECREF(fast);
                    return NULL;
                }
            }
            sites[i].nflags = (int)PySequence_Fast_GET_SIZE(f);
            Py_DECREF(f);
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
        if (!sampled) {
            at_until = 0;
            break; /* nothing left to read: Python finds out why */
        }
        wake_ups++;
    }
    if (at_until) { /* the tick's own wake-up, and a sample at it: not one of the wake-ups counted */
        struct timespec at = {(time_t)(until / 1000000000LL), (long)(until % 1000000000LL)};
        while (now_ns() < until && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
            ;
        int sampled = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!sites[i].error) {
                sample_site(&sites[i]);
                sampled += !sites[i].error;
            }
        }
        at_until = sampled > 0;
        if (at_until && next < until + period)
            next = until + period;
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
        PyObject *turns = Py_None;
        if (s->have_switch) {
            PyObject *seen = s->seen_over ? Py_NewRef(Py_None) : PyTuple_New(s->nseen);
            for (int h = 0; seen != NULL && !s->seen_over && h < s->nseen; h++)
                PyTuple_SET_ITEM(seen, h, PyLong_FromUnsignedLongLong(s->seen[h]));
            turns = seen == NULL ? NULL : Py_BuildValue("(KKlN)", (unsigned long long)s->first_holder,
                                                        (unsigned long long)s->last_holder, s->transitions, seen);
            if (turns == NULL) {
                Py_DECREF(holders);
                Py_DECREF(switch_number);
                Py_DECREF(results);
                return NULL;
            }
        } else
            Py_INCREF(turns);
        PyTuple_SET_ITEM(results, i, Py_BuildValue("(lllNNiN)", s->samples, s->held, s->contended, switch_number,
                                                   holders, s->error, turns));
    }
    return Py_BuildValue("(LlNi)", next, wake_ups, results, at_until);
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

/* obj.name = value, a new reference it takes (NULL: the making of it failed). */
static int set_new(PyObject *obj, PyObject *name, PyObject *value) {
    if (value == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, value);
    Py_DECREF(value);
    return r;
}

static int set_ll(PyObject *obj, PyObject *name, long long v) { return set_new(obj, name, PyLong_FromLongLong(v)); }

/* A NamedTuple of the items of `plain` (a reference it takes), made by tuple.__new__ itself (a
   NamedTuple is a tuple subclass; tuple's constructor sets up what a bare allocation would not,
   such as 3.14's cached hash). */
static PyObject *as_named(PyTypeObject *type, PyObject *plain) {
    PyObject *args = PyTuple_Pack(1, plain);
    Py_DECREF(plain);
    if (args == NULL)
        return NULL;
    PyObject *r = PyTuple_Type.tp_new(type, args, NULL);
    Py_DECREF(args);
    return r;
}

/* A reading. */
static PyObject *new_reading(PyTypeObject *type, PyObject **items) {
    PyObject *plain = PyTuple_New(8);
    if (plain == NULL)
        return NULL;
    for (int i = 0; i < 8; i++)
        PyTuple_SET_ITEM(plain, i, Py_NewRef(items[i]));
    return as_named(type, plain);
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

/* tid in the set? 1, 0, or -1 with an error set */
static int contains_tid(PyObject *set, long long tid) {
    PyObject *key = PyLong_FromLongLong(tid);
    if (key == NULL)
        return -1;
    int in = PySet_Contains(set, key);
    Py_DECREF(key);
    return in;
}

/* into the set if `in`, else out of it */
static int park(PyObject *set, long long tid, int in) {
    PyObject *key = PyLong_FromLongLong(tid);
    if (key == NULL)
        return -1;
    int r = in ? PySet_Add(set, key) : PySet_Discard(set, key);
    Py_DECREF(key);
    return r < 0 ? -1 : 0;
}

/* Is the syscall text one of the waits followed (it begins with one of `waits`)? */
static int is_wait(PyObject *syscall, PyObject *waits) {
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(waits); k++) {
        Py_ssize_t hit = PyUnicode_Tailmatch(syscall, PyTuple_GET_ITEM(waits, k), 0, PY_SSIZE_T_MAX, -1);
        if (hit != 0)
            return (int)hit; /* (1, or -1 with an error set) */
    }
    return 0;
}

/* threads.py's RESTART_SYSCALL: a timed wait a stop interrupted goes on in restart_syscall, whose
   text keeps the wait's arguments; the number of the wait it was read in last stands for it.
   NULL (no error set) where the text is not that, or nothing was read before. */
#if defined(__aarch64__)
#define RESTART_TEXT "128 "
#else
#define RESTART_TEXT "219 "
#endif
static PyObject *restarted(const char *buf, ssize_t got, PyObject *last) {
    if (last == NULL || got < 4 || memcmp(buf, RESTART_TEXT, 4) != 0)
        return NULL;
    Py_ssize_t len;
    const char *before = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(last, 6), &len);
    if (before == NULL) {
        PyErr_Clear();
        return NULL;
    }
    Py_ssize_t n = 0;
    while (n < len && before[n] >= '0' && before[n] <= '9')
        n++;
    if (n == 0 || n >= len || before[n] != ' ' || (n == 3 && memcmp(before, RESTART_TEXT, 3) == 0))
        return NULL;
    char text[300];
    if (n + (got - 3) >= (ssize_t)sizeof(text))
        return NULL;
    memcpy(text, before, (size_t)n);
    memcpy(text + n, buf + 3, (size_t)(got - 3));
    PyObject *out = PyUnicode_DecodeUTF8(text, n + (got - 3), NULL);
    if (out == NULL)
        PyErr_Clear();
    return out;
}

/* A thread's syscall text (a restart as the wait it restarts), its place in `parked` updated where
   waits are followed. NULL with an error set on a failure of ours; NULL with none where the thread's
   file could not be read or is not the kernel's text: it is left out, as Python leaves it out. */
static PyObject *read_syscall(long long sys_fd, char *buf, PyObject *last, int follow, PyObject *parked,
                              PyObject *waits, long long tid) {
    PyObject *syscall;
    if (sys_fd >= 0) {
        ssize_t got = read_file((int)sys_fd, buf, 257);
        if (got < 0)
            return NULL;
        syscall = restarted(buf, got, last);
        if (syscall == NULL && !PyErr_Occurred())
            syscall = PyUnicode_DecodeUTF8(buf, got, NULL);
        if (syscall == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            return NULL;
        }
    } else
        syscall = Py_NewRef(s_running);
    if (syscall == NULL)
        return NULL;
    int waiting = follow ? is_wait(syscall, waits) : 0;
    if (waiting < 0 || (follow && park(parked, tid, waiting) < 0)) {
        Py_DECREF(syscall);
        return NULL;
    }
    return syscall;
}

static PyObject *read_threads(PyObject *self, PyObject *args) {
    PyObject *threads, *read_every, *parked = NULL, *waits = NULL, *carried = NULL;
    long long reads, idle_from, stat_after_ns, stat_every, waits_every = 1;
    PyTypeObject *type;
    if (!PyArg_ParseTuple(args, "O!LO!LLLO!|O!O!LO!", &PyList_Type, &threads, &reads, &PyTuple_Type, &read_every,
                          &idle_from, &stat_after_ns, &stat_every, &PyType_Type, &type, &PySet_Type, &parked,
                          &PyTuple_Type, &waits, &waits_every, &PySet_Type, &carried))
        return NULL;
    Py_ssize_t steps = PyTuple_GET_SIZE(read_every);
    if (steps < 1 || stat_every < 1 || waits_every < 1 || !PyType_IsSubtype(type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ValueError, "no read table, no stat or wait period, or a reading type that is no tuple");
        return NULL;
    }
    for (Py_ssize_t k = 0; waits != NULL && k < PyTuple_GET_SIZE(waits); k++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(waits, k))) {
            PyErr_SetString(PyExc_TypeError, "a wait that is no str");
            return NULL;
        }
    int follow = parked != NULL && waits != NULL && PyTuple_GET_SIZE(waits) > 0;
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
                if (reading == NULL || set_ll(th, s_unchanged, unchanged + 1) < 0 || PyList_Append(out, reading) < 0) {
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
            int again = carried != NULL && PySet_GET_SIZE(carried) > 0 ? contains_tid(carried, tid) : 0;
            if (again < 0 || (again && park(carried, tid, 0) < 0))
                goto fail;
            if (again) { /* still, after a move its file was not read at */
                PyObject *syscall = read_syscall(sys_fd, buf, last, follow, parked, waits, tid);
                if (syscall == NULL) {
                    if (PyErr_Occurred())
                        goto fail;
                    continue;
                }
                int same = PyUnicode_Compare(syscall, PyTuple_GET_ITEM(last, 6));
                if (same == -1 && PyErr_Occurred()) {
                    Py_DECREF(syscall);
                    goto fail;
                }
                if (same != 0) { /* (left the wait before it stopped: moved into this one) */
                    char state = PyUnicode_Tailmatch(syscall, s_running, 0, 7, -1) == 1 ? 'R' : 'S';
                    PyObject *items[8];
                    for (int k = 0; k < 8; k++)
                        items[k] = PyTuple_GET_ITEM(last, k);
                    PyObject *letter = PyUnicode_FromStringAndSize(&state, 1);
                    items[1] = letter;
                    items[6] = syscall;
                    items[7] = Py_True;
                    reading = letter == NULL ? NULL : new_reading(type, items);
                    Py_XDECREF(letter);
                    Py_DECREF(syscall);
                    if (reading == NULL || set_ll(th, s_unchanged, 0) < 0) {
                        Py_XDECREF(reading);
                        goto fail;
                    }
                    goto done;
                }
                Py_DECREF(syscall);
            }
            reading = unmoved(type, last);
            if (reading == NULL || set_ll(th, s_unchanged, unchanged + 1) < 0) {
                Py_XDECREF(reading);
                goto fail;
            }
        } else {
            if (set_ll(th, s_unchanged, 0) < 0) /* (before the reads that may fail, as in Python) */
                goto fail;
            PyObject *syscall = NULL;
            int kept = 0;
            if (follow && last != NULL && (reads + tid) % waits_every) {
                /* still in the wait its last read found, the caller knows: not read again */
                kept = contains_tid(parked, tid);
                if (kept < 0)
                    goto fail;
                if (kept)
                    syscall = Py_NewRef(PyTuple_GET_ITEM(last, 6));
            }
            if (carried != NULL && park(carried, tid, kept) < 0) {
                Py_XDECREF(syscall);
                goto fail;
            }
            if (!kept) {
                syscall = read_syscall(sys_fd, buf, last, follow, parked, waits, tid);
                if (syscall == NULL) {
                    if (PyErr_Occurred())
                        goto fail;
                    continue; /* ended, or not the kernel's text: left out, as Python leaves it out */
                }
            }
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
    done:;
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

/* ------------------------------------------------------------------ tick_threads */

enum { K_RUNNING, K_GIL, K_SLEEP, K_IO, K_LOCK, K_OTHER, K_COUNT, K_DEFER = -1 };
static const char *const kind_names[K_COUNT] = {"running", "gil", "sleep", "io", "lock", "other"};
static PyObject *kind_str[K_COUNT];
static const int quiet_field[K_COUNT] = {9, 4, 6, 7, 8, 9}; /* a whole tick off CPU: its ThreadTick field */
static const int block_index[K_COUNT] = {-1, -1, 0, 1, 2, 3}; /* BLOCK_REASONS: sleep, io, lock, other */
static PyObject *s_on_ns, *s_runq_ns, *s_call, *s_off_kind, *s_in_runtime, *s_spinning, *s_pending_on,
    *s_pending_rq, *s_slices, *s_held_unmatched, *s_held_share, *s_quiet_us, *s_fill_us, *s_taken_back_us;
static long long spin_run_us, max_pending_us, unreported_on_us, runq_ahead_us;
static double held_share_weight, python_thread_held_share;
static int rules_set = 0;

static int kind_of(PyObject *s) {
    for (int k = 0; k < K_COUNT; k++)
        if (s == kind_str[k])
            return k;
    if (!PyUnicode_Check(s))
        return K_DEFER;
    for (int k = 0; k < K_COUNT; k++)
        if (PyUnicode_CompareWithASCIIString(s, kind_names[k]) == 0)
            return k;
    return K_DEFER;
}

static long long floordiv(long long a, long long b) { /* b > 0, as Python's // */
    long long q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static long long clamp_pending(long long v, long long most_ahead) {
    return v < -most_ahead ? -most_ahead : v > max_pending_us ? max_pending_us : v;
}

/* A whole token of [-]decimal digits (what int() of the kernel's text reads); 0 if it is not one. */
static int parse_decimal(const char *p, size_t n, long long *out) {
    size_t i = 0;
    int neg = 0;
    if (n && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n || n - i > 18)
        return 0;
    long long v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = neg ? -v : v;
    return 1;
}

/* A whole token of hex digits, 0x or not (what int(token, 16) reads of the kernel's text). */
static int parse_hex(const char *p, size_t n, unsigned long long *out) {
    size_t i = 0;
    if (n > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
        i = 2;
    if (i == n || n - i > 16)
        return 0;
    unsigned long long v = 0;
    for (; i < n; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return 0;
        v = (v << 4) | (unsigned long long)d;
    }
    *out = v;
    return 1;
}

#define MAX_PARTS 8
#define MAX_RANGES 64

typedef struct {
    PyObject *kinds, *nfds_arg; /* probes.threads: SYSCALL_KINDS, NFDS_ARG */
    unsigned long long gil_low[MAX_RANGES], gil_high[MAX_RANGES];
    int ngil;
    int has_gil, gil_located, has_runtime;
    unsigned long long runtime_low, runtime_high;
} Context;

/* probes.threads.classify_syscall, and sampler._syscall's note of a lock inside _PyRuntime: the
   kind, K_DEFER where Python must take it (text it would parse otherwise, a GIL not yet located). */
static int classify_syscall_c(const Context *cx, PyObject *text, int *in_runtime) {
    Py_ssize_t len;
    const char *t = PyUnicode_AsUTF8AndSize(text, &len);
    if (t == NULL) {
        PyErr_Clear();
        return K_DEFER;
    }
    if (len == 0 || (len >= 7 && memcmp(t, "running", 7) == 0))
        return K_RUNNING;
    const char *start[MAX_PARTS];
    size_t size[MAX_PARTS];
    int n = 0;
    for (Py_ssize_t i = 0; i < len;) {
        while (i < len && (t[i] == ' ' || t[i] == '\n' || t[i] == '\t'))
            i++;
        if (i >= len)
            break;
        Py_ssize_t j = i;
        while (j < len && t[j] != ' ' && t[j] != '\n' && t[j] != '\t')
            j++;
        if (n == MAX_PARTS)
            break; /* (only the first few are ever read) */
        start[n] = t + i;
        size[n++] = (size_t)(j - i);
        i = j;
    }
    long long nr;
    if (n == 0 || !parse_decimal(start[0], size[0], &nr))
        return K_DEFER;
    PyObject *key = PyLong_FromLongLong(nr);
    if (key == NULL)
        return K_DEFER;
    PyObject *kind = PyDict_GetItemWithError(cx->kinds, key); /* borrowed */
    if (kind == NULL) {
        Py_DECREF(key);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return K_DEFER;
        }
        return K_OTHER;
    }
    int k;
    if (PyUnicode_CompareWithASCIIString(kind, "futex") == 0) {
        Py_DECREF(key);
        unsigned long long addr = 0;
        if (n > 1 && !parse_hex(start[1], size[1], &addr))
            return K_DEFER;
        k = K_LOCK;
        if (cx->ngil && n > 1)
            for (int i = 0; i < cx->ngil; i++)
                if (cx->gil_low[i] <= addr && addr < cx->gil_high[i])
                    k = K_GIL;
    } else if (PyUnicode_CompareWithASCIIString(kind, "sleep?") == 0) {
        PyObject *arg = PyDict_GetItemWithError(cx->nfds_arg, key);
        Py_DECREF(key);
        if (arg == NULL) {
            PyErr_Clear();
            return K_DEFER;
        }
        long a = PyLong_AsLong(arg);
        if (a < 0 || a > MAX_PARTS - 2) {
            PyErr_Clear();
            return K_DEFER;
        }
        unsigned long long nfds = 1;
        if (n > 1 + a && !parse_hex(start[1 + a], size[1 + a], &nfds))
            return K_DEFER;
        return nfds == 0 ? K_SLEEP : K_IO;
    } else {
        Py_DECREF(key);
        k = kind_of(kind);
        if (k == K_RUNNING || k == K_DEFER)
            return K_DEFER;
    }
    if (!cx->has_gil || (k != K_GIL && k != K_LOCK))
        return k;
    if (k == K_GIL) {
        if (!cx->gil_located)
            return K_DEFER; /* its address may locate the GIL */
        *in_runtime = 0;
        return k;
    }
    unsigned long long addr; /* a lock: is it inside _PyRuntime (a GIL not yet known, say)? */
    if (n < 2 || !parse_hex(start[1], size[1], &addr) || !cx->has_runtime)
        return K_DEFER;
    *in_runtime = cx->runtime_low <= addr && addr < cx->runtime_high;
    return k;
}

static int set_double(PyObject *obj, PyObject *name, double v) { return set_new(obj, name, PyFloat_FromDouble(v)); }

static double attr_double(PyObject *obj, PyObject *name, int *ok) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        *ok = 0;
        return 0;
    }
    double out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    if (out == -1.0 && PyErr_Occurred())
        *ok = 0;
    return out;
}

static int attr_kind(PyObject *obj, PyObject *name, int *ok) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        *ok = 0;
        return K_DEFER;
    }
    int k = kind_of(v);
    Py_DECREF(v);
    return k;
}

/* A ThreadTick; its line `line` (borrowed), or 0 where NULL. */
static PyObject *new_tick(PyTypeObject *type, PyObject *tid, PyObject *cpu, const long long f[10], PyObject *line) {
    PyObject *plain = PyTuple_New(13);
    if (plain == NULL)
        return NULL;
    PyTuple_SET_ITEM(plain, 0, Py_NewRef(tid));
    PyTuple_SET_ITEM(plain, 1, Py_NewRef(cpu));
    for (int i = 0; i < 11; i++) {
        PyObject *v = i == 10 && line != NULL ? Py_NewRef(line) : PyLong_FromLongLong(i < 10 ? f[i] : 0);
        if (v == NULL) {
            Py_DECREF(plain);
            return NULL;
        }
        PyTuple_SET_ITEM(plain, 2 + i, v);
    }
    return as_named(type, plain);
}

/* states.unchanged: asleep all tick, for the reason it had. f: the tick's fields from `running`. */
static int unchanged_c(PyObject *mem, int call, int off_kind, long long dt, double held_frac, long long f[10]) {
    int kind = call == K_RUNNING ? off_kind : call;
    long long held = held_frac != 0.0 ? (long long)(held_frac * (double)dt) : 0;
    int ok = 1;
    double share = attr_double(mem, s_held_share, &ok);
    long long taken = attr_ll(mem, s_taken_back_us, &ok);
    if (!ok || (taken && set_ll(mem, s_taken_back_us, 0) < 0))
        return -1;
    if (held || share != 0.0) {
        share += held_share_weight * ((double)held / (double)dt - share);
        if (share < 1e-6)
            share = 0.0;
        if (set_double(mem, s_held_share, share) < 0)
            return -1;
    }
    memset(f, 0, 10 * sizeof(long long));
    f[quiet_field[kind] - 2] = dt;
    f[8] = held;
    return 0;
}

/* states.classify for a thread seen before (first=False) that moved or is running. */
static int classify_c(PyObject *r, PyObject *mem, int before, int off_kind, int call, long long dt,
                      double held_frac, int gil, long long gil_samples, long long f[10]) {
    int ok = 1;
    long long r_on = PyLong_AsLongLong(PyTuple_GET_ITEM(r, 3));
    long long r_rq = PyLong_AsLongLong(PyTuple_GET_ITEM(r, 4));
    long long r_slices = PyLong_AsLongLong(PyTuple_GET_ITEM(r, 5));
    if (PyErr_Occurred())
        return -1;
    long long m_on = attr_ll(mem, s_on_ns, &ok), m_rq = attr_ll(mem, s_runq_ns, &ok);
    long long m_slices = attr_ll(mem, s_slices, &ok);
    long long pending_on = attr_ll(mem, s_pending_on, &ok), pending_rq = attr_ll(mem, s_pending_rq, &ok);
    if (!ok)
        return -1;
    long long rep_on = floordiv(r_on - m_on, 1000), rep_rq = floordiv(r_rq - m_rq, 1000);
    long long slices = r_slices - m_slices; /* (0 where it has never been on a CPU: not a first reading) */
    if (set_ll(mem, s_on_ns, r_on) < 0 || set_ll(mem, s_runq_ns, r_rq) < 0 ||
        PyObject_SetAttr(mem, s_call, kind_str[call]) < 0 || set_ll(mem, s_slices, r_slices) < 0)
        return -1;
    PyObject *state = PyTuple_GET_ITEM(r, 1);
    int busy = PyUnicode_Check(state) && PyUnicode_CompareWithASCIIString(state, "R") == 0 && call == K_RUNNING &&
               before == K_RUNNING;

    /* place_cpu_time */
    long long due_on = rep_on + pending_on, due_rq = rep_rq + pending_rq;
    int settled = call != K_RUNNING || slices > 0; /* see states.place_cpu_time */
    long long fill = attr_ll(mem, s_fill_us, &ok), taken = 0, quiet_before = attr_ll(mem, s_quiet_us, &ok);
    if (!ok)
        return -1;
    int quiet = rep_on <= 0 && !settled;
    long long quiet_us = quiet ? quiet_before + dt : 0;
    if (quiet && fill && quiet_us >= unreported_on_us) {
        taken = fill;
        due_on += fill;
        due_rq -= fill;
    }
    if (due_on < 0) {
        if (rep_rq > 0 && due_rq > 0) {
            long long moved = -due_on < due_rq ? -due_on : due_rq;
            due_on += moved;
            due_rq -= moved;
            taken = moved < fill ? moved : fill;
        }
        if (settled)
            due_on = 0;
    }
    if (settled && due_rq < 0)
        due_rq = 0;
    long long on = due_on > 0 ? due_on : 0, runq = due_rq > 0 ? due_rq : 0, fill_now = 0;
    if (busy && on + runq < dt) {
        if (quiet && quiet_us >= unreported_on_us) {
            runq = dt - on;
        } else {
            fill_now = dt - runq - on;
            on = dt - runq;
        }
    }
    if (set_ll(mem, s_quiet_us, quiet_us) < 0 || set_ll(mem, s_taken_back_us, taken) < 0 ||
        set_ll(mem, s_fill_us, fill_now) < 0)
        return -1;
    if (on + runq > dt) {
        double scale = (double)dt / (double)(on + runq);
        on = (long long)((double)on * scale);
        runq = runq ? dt - on : 0;
    }
    long long ahead = fill_now > unreported_on_us ? fill_now : unreported_on_us; /* (all of a long tick's fill) */
    if (set_ll(mem, s_pending_on, clamp_pending(due_on - on, ahead)) < 0 ||
        set_ll(mem, s_pending_rq, clamp_pending(due_rq - runq, runq_ahead_us)) < 0)
        return -1;
    long long off = dt - on - runq;

    long long running = 0, native = 0, waiting = 0;
    long long held = (long long)(held_frac * (double)dt);
    if (gil == 0) { /* located */
        long long unmatched_before = attr_ll(mem, s_held_unmatched, &ok);
        double share = attr_double(mem, s_held_share, &ok);
        PyObject *sp = PyObject_GetAttr(mem, s_spinning);
        if (sp == NULL || !ok) {
            Py_XDECREF(sp);
            return -1;
        }
        int spinning = PyObject_IsTrue(sp);
        Py_DECREF(sp);
        if (spinning < 0)
            return -1;
        long long owed = held + unmatched_before;
        running = on < owed ? on : owed;
        long long unmatched = held > on ? held - on : 0;
        if (set_ll(mem, s_held_unmatched, unmatched < max_pending_us ? unmatched : max_pending_us) < 0)
            return -1;
        long long spin = on - running;
        share += held_share_weight * ((double)held / (double)dt - share);
        if (set_double(mem, s_held_share, share) < 0)
            return -1;
        long long sample_period = gil_samples && held ? floordiv(dt, gil_samples) : 0;
        int short_runs = spin < spin_run_us * (slices > 1 ? slices : 1) + sample_period;
        int after_gil = held > 0 || call == K_GIL || before == K_GIL || spinning;
        int now_spinning = 0;
        if (share > python_thread_held_share || (short_runs && after_gil)) {
            waiting += spin;
            now_spinning = held == 0 && spin > 0;
        } else {
            native += spin;
        }
        if (PyObject_SetAttr(mem, s_spinning, now_spinning ? Py_True : Py_False) < 0)
            return -1;
    } else if (gil == 1) { /* not python */
        native = on;
    } else {
        running = on;
    }
    memset(f, 0, 10 * sizeof(long long));
    f[0] = running;
    f[1] = native;
    f[3] = runq;
    f[8] = held;
    f[9] = on;
    if (off > 0) {
        int kinds[2], nk = 0;
        if (before == call) {
            kinds[nk++] = call != K_RUNNING ? call : off_kind;
        } else {
            if (before != K_RUNNING)
                kinds[nk++] = before;
            if (call != K_RUNNING)
                kinds[nk++] = call;
            if (!nk)
                kinds[nk++] = off_kind;
        }
        long long share = off / nk;
        for (int i = 0; i < nk; i++) {
            long long part = i ? share : off - share * (nk - 1);
            if (kinds[i] == K_GIL)
                waiting += part;
            else
                f[4 + block_index[kinds[i]]] += part;
        }
        if (PyObject_SetAttr(mem, s_off_kind, kind_str[kinds[nk - 1]]) < 0)
            return -1;
    }
    f[2] = waiting;
    return 0;
}

/* tick_threads(readings, start, ticks, known, seen, held_by, dt, gil, gil_samples, gil_ranges,
                has_gil, gil_located, runtime_range, tick_type, syscall_kinds, nfds_arg[, lines]) -> index
   sampler._process_tick's loop over one process's readings, from `start`: each reading's ThreadTick
   appended to `ticks`, its line lines[tid] where there is one, its ThreadMemory (known[tid])
   updated, as the Python loop does. Stops at the
   first reading Python must take (a thread new or not seen before, a GIL wait on a GIL not yet
   located, text it would parse otherwise) and returns its index; len(readings) when done. */
static PyObject *tick_threads(PyObject *self, PyObject *args) {
    PyObject *readings, *ticks, *known, *seen, *held_by, *gil_state, *gil_ranges, *runtime_range, *kinds, *nfds_arg;
    PyObject *lines = Py_None;
    PyTypeObject *tick_type;
    Py_ssize_t start;
    long long dt, gil_samples;
    int has_gil, gil_located;
    if (!PyArg_ParseTuple(args, "O!nO!O!O!O!LULO!ppOO!O!O!|O", &PyList_Type, &readings, &start, &PyList_Type, &ticks,
                          &PyDict_Type, &known, &PySet_Type, &seen, &PyDict_Type, &held_by, &dt, &gil_state,
                          &gil_samples, &PyTuple_Type, &gil_ranges, &has_gil, &gil_located, &runtime_range,
                          &PyType_Type, &tick_type, &PyDict_Type, &kinds, &PyDict_Type, &nfds_arg, &lines))
        return NULL;
    if (lines != Py_None && !PyDict_Check(lines)) {
        PyErr_SetString(PyExc_TypeError, "lines must be a dict or None");
        return NULL;
    }
    if (!rules_set) {
        PyErr_SetString(PyExc_RuntimeError, "the state rules' constants are not set (set_rules)");
        return NULL;
    }
    if (dt <= 0) {
        PyErr_SetString(PyExc_ValueError, "dt must be positive");
        return NULL;
    }
    Context cx = {.kinds = kinds, .nfds_arg = nfds_arg, .has_gil = has_gil, .gil_located = gil_located};
    int gil = PyUnicode_CompareWithASCIIString(gil_state, "located") == 0       ? 0
              : PyUnicode_CompareWithASCIIString(gil_state, "not python") == 0 ? 1
                                                                               : 2;
    Py_ssize_t nranges = PyTuple_GET_SIZE(gil_ranges);
    if (nranges > MAX_RANGES)
        return PyLong_FromSsize_t(start); /* (Python takes them all) */
    for (Py_ssize_t i = 0; i < nranges; i++) {
        PyObject *pair = PyTuple_GET_ITEM(gil_ranges, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2)
            return PyLong_FromSsize_t(start);
        cx.gil_low[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(pair, 0));
        cx.gil_high[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(pair, 1));
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return PyLong_FromSsize_t(start);
        }
    }
    cx.ngil = (int)nranges;
    if (runtime_range != Py_None) {
        if (!PyTuple_Check(runtime_range) || PyTuple_GET_SIZE(runtime_range) != 2)
            return PyLong_FromSsize_t(start);
        cx.runtime_low = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(runtime_range, 0));
        cx.runtime_high = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(runtime_range, 1));
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return PyLong_FromSsize_t(start);
        }
        cx.has_runtime = 1;
    }
    Py_ssize_t n = PyList_GET_SIZE(readings);
    Py_ssize_t i;
    for (i = start; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(readings, i);
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 8)
            break;
        PyObject *tid = PyTuple_GET_ITEM(r, 0);
        PyObject *mem = PyDict_GetItemWithError(known, tid); /* borrowed */
        if (mem == NULL) {
            if (PyErr_Occurred())
                return NULL;
            break; /* a new thread */
        }
        int in_seen = PySet_Contains(seen, tid);
        if (in_seen < 0)
            return NULL;
        if (!in_seen)
            break; /* its first tick here */
        int ok = 1;
        int before = attr_kind(mem, s_call, &ok);
        int off_kind = attr_kind(mem, s_off_kind, &ok);
        if (!ok)
            return NULL;
        if (before == K_DEFER || off_kind == K_DEFER || off_kind == K_RUNNING)
            break;
        double held_frac = 0.0;
        PyObject *h = PyDict_GetItemWithError(held_by, tid);
        if (h != NULL) {
            held_frac = PyFloat_AsDouble(h);
            if (held_frac == -1.0 && PyErr_Occurred())
                return NULL;
        } else if (PyErr_Occurred()) {
            return NULL;
        }
        long long f[10];
        int moved = PyTuple_GET_ITEM(r, 7) == Py_True;
        if (!moved && before != K_RUNNING) {
            if (unchanged_c(mem, before, off_kind, dt, held_frac, f) < 0)
                return NULL;
        } else {
            int call = before, in_runtime = -1;
            if (moved) {
                call = classify_syscall_c(&cx, PyTuple_GET_ITEM(r, 6), &in_runtime);
                if (call == K_DEFER)
                    break;
            }
            if (in_runtime >= 0 && PyObject_SetAttr(mem, s_in_runtime, in_runtime ? Py_True : Py_False) < 0)
                return NULL;
            if (classify_c(r, mem, before, off_kind, call, dt, held_frac, gil, gil_samples, f) < 0)
                return NULL;
        }
        PyObject *line = NULL;
        if (lines != Py_None) {
            line = PyDict_GetItemWithError(lines, tid); /* borrowed */
            if (line == NULL && PyErr_Occurred())
                return NULL;
        }
        PyObject *tick = new_tick(tick_type, tid, PyTuple_GET_ITEM(r, 2), f, line);
        if (tick == NULL)
            return NULL;
        int appended = PyList_Append(ticks, tick);
        Py_DECREF(tick);
        if (appended < 0)
            return NULL;
    }
    return PyLong_FromSsize_t(i);
}

/* set_rules(spin_run_us, held_share_weight, python_thread_held_share, max_pending_us, unreported_on_us,
   runq_ahead_us): states.py's constants. */
static PyObject *set_rules(PyObject *self, PyObject *args) {
    if (!PyArg_ParseTuple(args, "LddLLL", &spin_run_us, &held_share_weight, &python_thread_held_share,
                          &max_pending_us, &unreported_on_us, &runq_ahead_us))
        return NULL;
    rules_set = 1;
    Py_RETURN_NONE;
}

/* frame_tops(fd, tstates, layout) -> [top, ...]: each thread's innermost Python frame, as
probes/frames.py's FrameReader._frames walks it, in one call for a tick's threads. A top is None (no
Python frame: the walk ended, met a frame twice, or met only frames that are no code), (code key,
byte offset) where the key is the bytes of FrameReader's code key (the code object's address, its
filename, name and line table pointers, its first line), or False: anything unusual (a read that
fails, a pointer that is none), left to Python to read again and say what it is. layout:
FrameReader.c_layout. */
#define MAX_WALK 64
#define MAX_STRUCT 512
typedef struct {
    long long frame_offset, cframe_frame, frame_size, frame_code, frame_back, frame_instr, frame_owner, code_size,
        code_filename, code_name, code_linetable, code_firstlineno, lasti_unit, code_start, skips_max;
    unsigned long long code_type, untag;
} Walk;

static int is_user_pointer(uint64_t p) { return p >= 0x1000 && p < (1ULL << 47); } /* as memory.is_pointer */

/* One thread's top: a new reference (None, False or (key, offset)), NULL with an exception set. */
static PyObject *frame_top(int fd, uint64_t tstate, const Walk *w) {
    unsigned char buf[MAX_STRUCT], code[MAX_STRUCT];
    uint64_t frame, seen[MAX_WALK + 1];
    int nseen = 0, skips = (int)w->skips_max;
    uint64_t at = tstate + (uint64_t)w->frame_offset;
    if (at == 0 || at >= (1ULL << 63) || pread(fd, &frame, 8, (off_t)at) != 8)
        Py_RETURN_FALSE;
    if (w->cframe_frame >= 0 && frame &&
        (frame + w->cframe_frame >= (1ULL << 63) || pread(fd, &frame, 8, (off_t)(frame + w->cframe_frame)) != 8))
        Py_RETURN_FALSE;
    for (;;) {
        for (int k = 0; k < nseen; k++)
            if (seen[k] == frame)
                Py_RETURN_NONE; /* a loop ends the walk, as in Python */
        if (frame == 0)
            Py_RETURN_NONE;
        if (!is_user_pointer(frame) || nseen > MAX_WALK)
            Py_RETURN_FALSE;
        seen[nseen++] = frame;
        if (pread(fd, buf, (size_t)w->frame_size, (off_t)frame) != (ssize_t)w->frame_size)
            Py_RETURN_FALSE;
        uint64_t co, back, type = 0;
        memcpy(&co, buf + w->frame_code, 8);
        memcpy(&back, buf + w->frame_back, 8);
        co &= w->untag;
        if (w->frame_owner < 0 || buf[w->frame_owner] != 3 /* FRAME_OWNED_BY_CSTACK */) {
            if (!is_user_pointer(co) || pread(fd, code, (size_t)w->code_size, (off_t)co) != (ssize_t)w->code_size)
                Py_RETURN_FALSE;
            memcpy(&type, code + 8, 8);
        }
        if (type != w->code_type) { /* no code: a shim, or an executable that is no code object */
            if (--skips <= 0)
                Py_RETURN_NONE;
            frame = back;
            continue;
        }
        long long offset;
        if (w->code_start < 0) {
            int32_t lasti;
            memcpy(&lasti, buf + w->frame_instr, 4);
            offset = (long long)lasti * w->lasti_unit;
        } else {
            uint64_t instr;
            memcpy(&instr, buf + w->frame_instr, 8);
            offset = (long long)(instr - (co + (uint64_t)w->code_start));
        }
        unsigned char key[36];
        memcpy(key, &co, 8);
        memcpy(key + 8, code + w->code_filename, 8);
        memcpy(key + 16, code + w->code_name, 8);
        memcpy(key + 24, code + w->code_linetable, 8);
        memcpy(key + 32, code + w->code_firstlineno, 4);
        return Py_BuildValue("(y#L)", (const char *)key, (Py_ssize_t)36, offset);
    }
}

static PyObject *frame_tops(PyObject *self, PyObject *args) {
    int fd;
    PyObject *seq;
    Walk w;
    if (!PyArg_ParseTuple(args, "iO(LLKLLLLLKLLLLLLLL)", &fd, &seq, &w.frame_offset, &w.cframe_frame, &w.untag,
                          &w.frame_size, &w.frame_code, &w.frame_back, &w.frame_instr, &w.frame_owner, &w.code_type,
                          &w.code_size, &w.code_filename, &w.code_name, &w.code_linetable, &w.code_firstlineno,
                          &w.lasti_unit, &w.code_start, &w.skips_max))
        return NULL;
    long long fields[] = {w.frame_code, w.frame_back, w.frame_instr, w.frame_owner};
    for (int k = 0; k < 4; k++)
        if (fields[k] >= w.frame_size || (k < 2 && fields[k] + 8 > w.frame_size)) {
            PyErr_SetString(PyExc_ValueError, "a frame layout larger than its size");
            return NULL;
        }
    if (w.frame_size > MAX_STRUCT || w.code_size > MAX_STRUCT || w.code_size < 16 || w.skips_max > MAX_WALK ||
        w.code_filename + 8 > w.code_size || w.code_name + 8 > w.code_size || w.code_linetable + 8 > w.code_size ||
        w.code_firstlineno + 4 > w.code_size || w.frame_instr + (w.code_start < 0 ? 4 : 8) > w.frame_size) {
        PyErr_SetString(PyExc_ValueError, "a frame or code layout this loop does not read");
        return NULL;
    }
    PyObject *fast = PySequence_Fast(seq, "tstates must be a sequence");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        unsigned long long tstate = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(fast, i));
        PyObject *top = PyErr_Occurred() ? NULL : frame_top(fd, tstate, &w);
        if (top == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, top);
    }
    Py_DECREF(fast);
    return out;
}

static PyMethodDef methods[] = {
    {"sample", sample, METH_VARARGS, "Samples GILs until a time: see the module's comment."},
    {"read_threads", read_threads, METH_VARARGS, "Reads every thread of one process: see the module's comment."},
    {"tick_threads", tick_threads, METH_VARARGS, "The state rules of one process's threads at a tick: see above."},
    {"frame_tops", frame_tops, METH_VARARGS, "Each thread's innermost Python frame: see above."},
    {"set_rules", set_rules, METH_VARARGS, "The state rules' constants (capture/states.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gilloop", "GIL sampling between ticks, and reading threads and their lines at a tick, in C.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__gilloop(void) {
    if (!(s_tid = PyUnicode_InternFromString("tid")) || !(s_sched = PyUnicode_InternFromString("sched")) ||
        !(s_stat = PyUnicode_InternFromString("stat")) || !(s_sys = PyUnicode_InternFromString("sys")) ||
        !(s_last = PyUnicode_InternFromString("last")) || !(s_unchanged = PyUnicode_InternFromString("unchanged")) ||
        !(s_running = PyUnicode_InternFromString("running")))
        return NULL;
    for (int k = 0; k < K_COUNT; k++)
        if (!(kind_str[k] = PyUnicode_InternFromString(kind_names[k])))
            return NULL;
    if (!(s_on_ns = PyUnicode_InternFromString("on_ns")) || !(s_runq_ns = PyUnicode_InternFromString("runq_ns")) ||
        !(s_call = PyUnicode_InternFromString("call")) || !(s_off_kind = PyUnicode_InternFromString("off_kind")) ||
        !(s_in_runtime = PyUnicode_InternFromString("in_runtime")) ||
        !(s_spinning = PyUnicode_InternFromString("spinning_for_gil")) ||
        !(s_pending_on = PyUnicode_InternFromString("pending_on")) ||
        !(s_pending_rq = PyUnicode_InternFromString("pending_rq")) || !(s_slices = PyUnicode_InternFromString("slices")) ||
        !(s_held_unmatched = PyUnicode_InternFromString("held_unmatched")) ||
        !(s_held_share = PyUnicode_InternFromString("held_share")) ||
        !(s_quiet_us = PyUnicode_InternFromString("quiet_us")) || !(s_fill_us = PyUnicode_InternFromString("fill_us")) ||
        !(s_taken_back_us = PyUnicode_InternFromString("taken_back_us")))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "VERSION", 4) < 0) { /* (native.py's COMPILED_VERSION) */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
