// wc-single: WordCount in one process, for comparison (bench/wordcount runs it with `lowcloud
// run`). Prints the same result as collect.
//   wc-single FILE...
#include "wc.h"

int main(int argc, char **argv) {
  if (argc < 2) die("usage: wc-single FILE...");
  wc_init();
  wc_table t; wc_table_init(&t);
  for (int i = 1; i < argc; i++) if (wc_count_file(argv[i], &t) < 0) { printf("wc-single: cannot read %s\n", argv[i]); return 1; }
  wc_buf result = {0};
  wc_result(&t, &result);
  fwrite(result.buf, 1, result.len, stdout);
  return 0;
}
