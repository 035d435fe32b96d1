// wc-reduce: the reduce stage of WordCount. Waits for one delivery from each mapper (its partition
// of their counts), adds them up and delivers the totals to collect.
//   wc-reduce --name NAME --listen PORT --collect HOST:PORT --from MAPPER[=VERSION]...
// With a VERSION (and a disk grant), a delivery is kept in /data: after a restart only mappers
// whose version changed are waited for.
#include "wc-net.h"

int main(int argc, char **argv) {
  const char *name = NULL, *collect = NULL;
  int port = 0, nsrc = 0;
  wc_source src[64];
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) name = argv[++i];
    else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--collect") == 0 && i + 1 < argc) collect = argv[++i];
    else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc && nsrc < 64) wc_source_parse(&src[nsrc++], argv[++i]);
    else die("usage: wc-reduce --name NAME --listen PORT --collect HOST:PORT --from MAPPER[=VERSION]...");
  }
  if (!name || !collect || port <= 0 || nsrc == 0) die("usage: wc-reduce --name NAME --listen PORT --collect HOST:PORT --from MAPPER[=VERSION]...");
  wc_init();
  wc_table t; wc_table_init(&t);
  wc_gather(name, port, src, nsrc, &t);
  wc_buf out = {0};
  for (uint32_t i = 0; i < t.cap; i++) if (t.slots[i].off != 0) wc_put_entry(&out, t.arena + t.slots[i].off, t.slots[i].len, t.slots[i].count);
  wc_put(&out, "end\n", 4);
  printf("%s: %u distinct words in its partition\n", name, t.used);
  fflush(stdout);
  const char *e = wc_deliver(collect, name, &out, 120);
  if (e) { printf("%s: %s\n", name, e); return 1; }
  printf("%s: sent %zu bytes to %s\n", name, out.len, collect);
  printf("done\n");
  return 0;
}
