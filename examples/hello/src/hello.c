// hello: the two-minute tour's process. Reads a greeting from its config file and logs it every few
// seconds with a counter, keeping a visit count in its private writable directory so the disk grant
// is visible in `lowcloud status`. Runs until stopped.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void read_greeting(const char *path, char *out, size_t n) {
  FILE *f = fopen(path, "r");
  if (!f) { snprintf(out, n, "hello (no %s)", path); return; }
  if (!fgets(out, (int)n, f)) out[0] = 0;
  fclose(f);
  out[strcspn(out, "\r\n")] = 0;
}

static long bump_visits(const char *path) {
  long v = 0;
  FILE *f = fopen(path, "r");
  if (f) { if (fscanf(f, "%ld", &v) != 1) v = 0; fclose(f); }
  v++;
  f = fopen(path, "w");
  if (f) { fprintf(f, "%ld\n", v); fclose(f); }
  return v;
}

int main(int argc, char **argv) {
  const char *conf = argc > 1 ? argv[1] : "/etc/hello.conf";
  int every = argc > 2 ? atoi(argv[2]) : 5;
  const char *who = getenv("WHO");
  char greeting[256];
  read_greeting(conf, greeting, sizeof greeting);
  long visits = bump_visits("/data/visits");
  printf("%s, %s! (start #%ld)\n", greeting, who ? who : "world", visits);
  fflush(stdout);
  for (long tick = 1;; tick++) {
    sleep((unsigned)(every > 0 ? every : 5));
    printf("%s (tick %ld)\n", greeting, tick);
    fflush(stdout);
  }
}
