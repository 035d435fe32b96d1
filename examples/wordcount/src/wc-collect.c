// wc-collect: the last stage of WordCount. Waits for every reducer's totals, then writes the
// result to OUT (default /data/result.txt) and prints it: `word<TAB>count` by count descending,
// then word ascending (bytes), then `total N words, D distinct`, then `done`.
//   wc-collect --listen PORT --from REDUCER[=VERSION]... [--out FILE]
#include "wc-net.h"

int main(int argc, char **argv) {
  const char *out_path = "/data/result.txt";
  int port = 0, nsrc = 0;
  wc_source src[64];
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out_path = argv[++i];
    else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc && nsrc < 64) wc_source_parse(&src[nsrc++], argv[++i]);
    else die("usage: wc-collect --listen PORT --from REDUCER[=VERSION]... [--out FILE]");
  }
  if (port <= 0 || nsrc == 0) die("usage: wc-collect --listen PORT --from REDUCER[=VERSION]... [--out FILE]");
  wc_init();
  wc_table t; wc_table_init(&t);
  // No progress lines: the log holds exactly the result and `done`.
  wc_quiet = 1;
  wc_gather("collect", port, src, nsrc, &t);
  wc_buf result = {0};
  wc_result(&t, &result);
  FILE *f = fopen(out_path, "wb");
  if (!f || fwrite(result.buf, 1, result.len, f) != result.len || fclose(f) != 0) { printf("collect: cannot write %s\n", out_path); return 1; }
  fwrite(result.buf, 1, result.len, stdout);
  printf("done\n");
  return 0;
}
