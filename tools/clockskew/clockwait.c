/* Completes Debian's libfaketime for the lab's clock-skew faults (sidecar/lab/clockskew.py).
 *
 * libfaketime 0.9.10 changes the rate of every clock a process reads, monotonic included,
 * but it does not wrap sem_clockwait(3) (glibc 2.30), which CPython 3.11 uses for every
 * timed lock wait (threading.Event.wait, queue.get, Condition.wait). Python computes that
 * deadline on the faked monotonic clock, the kernel waits on the real one: a thread that
 * waits for half a second would wait for years. This wrapper turns the faked deadline
 * into a real one at the faked rate, so waits last what the skewed process believes.
 *
 * It also writes, when the process starts, one line to $LSCLOCK_MAP:
 *     <real wall seconds> <faked wall seconds> <rate>
 * read at the same instant, so a checker outside the process can tell which real
 * instant any wall-clock time the process publishes (a lease's end) stands for.
 *
 * Load it before libfaketime: LD_PRELOAD="clockwait.so libfaketimeMT.so.1".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000LL

static double rate(void) {
  const char *spec = getenv("FAKETIME");
  const char *x = spec ? strchr(spec, 'x') : NULL;
  double r = x ? atof(x + 1) : 1.0;
  return r > 0 ? r : 1.0;
}

static long long ns_of(const struct timespec *t) { return t->tv_sec * NS + t->tv_nsec; }

/* The kernel's clock, past libfaketime and the vDSO. */
static void real_clock(clockid_t clock, struct timespec *t) {
  syscall(SYS_clock_gettime, clock, t);
}

int sem_clockwait(sem_t *sem, clockid_t clock, const struct timespec *abstime) {
  static int (*next)(sem_t *, clockid_t, const struct timespec *);
  struct timespec faked, now, deadline;
  if (!next) next = (int (*)(sem_t *, clockid_t, const struct timespec *))
                        dlsym(RTLD_NEXT, "sem_clockwait");
  clock_gettime(clock, &faked); /* libfaketime's */
  real_clock(CLOCK_MONOTONIC, &now);
  /* In doubles, clamped: CPython gives the longest waits a deadline near LLONG_MAX. */
  double left = ((double)abstime->tv_sec - faked.tv_sec) * NS
                + ((double)abstime->tv_nsec - faked.tv_nsec);
  if (left < 0) left = 0;
  double at = (double)ns_of(&now) + left / rate();
  if (at > (double)LLONG_MAX / 2) at = (double)LLONG_MAX / 2;
  deadline.tv_sec = (time_t)((long long)at / NS);
  deadline.tv_nsec = (long)((long long)at % NS);
  return next(sem, CLOCK_MONOTONIC, &deadline);
}

/* Every process image that loads this writes its own line (`ip netns exec`, then the
 * Python it runs): the last one, the sidecar's, stays. Written aside and renamed, so a
 * reader never sees half a line. */
__attribute__((constructor)) static void write_map(void) {
  const char *path = getenv("LSCLOCK_MAP");
  struct timespec real, faked;
  char partial[4096];
  if (!path || !*path) return;
  if (snprintf(partial, sizeof partial, "%s.%d", path, (int)getpid()) >= (int)sizeof partial)
    return;
  real_clock(CLOCK_REALTIME, &real);
  clock_gettime(CLOCK_REALTIME, &faked);
  FILE *out = fopen(partial, "w");
  if (!out) return;
  fprintf(out, "%lld.%09ld %lld.%09ld %.9f\n", (long long)real.tv_sec, real.tv_nsec,
          (long long)faked.tv_sec, faked.tv_nsec, rate());
  if (fclose(out) == 0) rename(partial, path);
  else unlink(partial);
}
