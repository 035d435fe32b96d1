// wc-map: the map stage of WordCount. Counts the words of its input files, splits the counts by
// reducer (FNV-1a of the word modulo the number of reducers) and delivers each reducer its part.
//   wc-map --name NAME --reducer HOST:PORT... FILE...
// The reducers are given in partition order: the first owns partition 0.
#include "wc-net.h"

int main(int argc, char **argv) {
  const char *name = NULL, *reducers[64], *files[256];
  int nr = 0, nf = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) name = argv[++i];
    else if (strcmp(argv[i], "--reducer") == 0 && i + 1 < argc && nr < 64) reducers[nr++] = argv[++i];
    else if (nf < 256) files[nf++] = argv[i];
  }
  if (!name || nr == 0 || nf == 0) die("usage: wc-map --name NAME --reducer HOST:PORT... FILE...");
  wc_init();
  wc_table t; wc_table_init(&t);
  long long bytes = 0;
  for (int i = 0; i < nf; i++) {
    long long n = wc_count_file(files[i], &t);
    if (n < 0) { printf("%s: cannot read %s\n", name, files[i]); return 1; }
    bytes += n;
  }
  wc_buf *parts = xmalloc(sizeof(wc_buf) * nr);
  memset(parts, 0, sizeof(wc_buf) * nr);
  uint64_t words = 0;
  for (uint32_t i = 0; i < t.cap; i++) {
    const wc_slot *s = &t.slots[i];
    if (s->off == 0) continue;
    words += s->count;
    wc_put_entry(&parts[wc_partition(s->hash, nr)], t.arena + s->off, s->len, s->count);
  }
  printf("%s: %lld bytes, %llu words, %u distinct\n", name, bytes, (unsigned long long)words, t.used);
  fflush(stdout);
  for (int r = 0; r < nr; r++) {
    wc_put(&parts[r], "end\n", 4);
    const char *e = wc_deliver(reducers[r], name, &parts[r], 120);
    if (e) { printf("%s: %s\n", name, e); return 1; }
    printf("%s: sent %zu bytes to %s\n", name, parts[r].len, reducers[r]);
    fflush(stdout);
  }
  printf("done\n");
  return 0;
}
