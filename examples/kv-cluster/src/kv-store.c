// kv-store: a TCP key-value store. Line protocol, one command per line:
//   SET key value  -> OK          GET key -> VALUE value | NOTFOUND
//   DEL key        -> OK          PING    -> PONG <name>
// Reads its settings from a config file (default /etc/kv.conf): name=..., port=...
// Connections are served one after another (simple and enough for the example).
#include <stdio.h>
#include <string.h>
#include "../../../test/fixtures/guests/p2/wasi-sockets.h"

#define MAXKEYS 1024
static char *keys[MAXKEYS], *vals[MAXKEYS];
static int nkeys = 0;
static char name[64] = "kv";
static int port = 7000;

static void load_config(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) { printf("kv-store: no config at %s, using defaults\n", path); return; }
  char line[256];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (strncmp(line, "name=", 5) == 0) snprintf(name, sizeof name, "%s", line + 5);
    if (strncmp(line, "port=", 5) == 0) port = atoi(line + 5);
  }
  fclose(f);
}

static int find(const char *k) {
  for (int i = 0; i < nkeys; i++) if (strcmp(keys[i], k) == 0) return i;
  return -1;
}

static void handle(char *line, char *out, size_t n) {
  char *cmd = strtok(line, " "), *k = strtok(NULL, " "), *v = strtok(NULL, "");
  if (!cmd) { snprintf(out, n, "ERR empty\n"); return; }
  if (strcmp(cmd, "PING") == 0) { snprintf(out, n, "PONG %s\n", name); return; }
  if (!k) { snprintf(out, n, "ERR missing key\n"); return; }
  int i = find(k);
  if (strcmp(cmd, "GET") == 0) { if (i < 0) snprintf(out, n, "NOTFOUND\n"); else snprintf(out, n, "VALUE %s\n", vals[i]); return; }
  if (strcmp(cmd, "DEL") == 0) { if (i >= 0) { free(keys[i]); free(vals[i]); keys[i] = keys[nkeys - 1]; vals[i] = vals[nkeys - 1]; nkeys--; } snprintf(out, n, "OK\n"); return; }
  if (strcmp(cmd, "SET") == 0 && v) {
    if (i < 0) { if (nkeys == MAXKEYS) { snprintf(out, n, "ERR full\n"); return; } i = nkeys++; keys[i] = strdup(k); vals[i] = NULL; }
    free(vals[i]); vals[i] = strdup(v);
    snprintf(out, n, "OK\n");
    return;
  }
  snprintf(out, n, "ERR unknown command\n");
}

int main(int argc, char **argv) {
  load_config(argc > 1 ? argv[1] : "/etc/kv.conf");
  int32_t s = ws_tcp();
  // Every address of its machine: the infra file may give the machine any address (`address:`).
  uint8_t any[4] = {0, 0, 0, 0};
  const char *e = ws_listen(s, ws_instance_network(), any, port);
  if (e) { printf("kv-store %s: bind %d: %s\n", name, port, e); return 1; }
  printf("kv-store %s listening on 0.0.0.0:%d\n", name, port);
  fflush(stdout);
  for (;;) {
    int32_t c, in, out;
    if (ws_accept_one(s, &c, &in, &out)) continue;
    char buf[4096], line[4096], reply[4200];
    int len = 0, got;
    while ((got = ws_read(in, buf, sizeof buf)) > 0) {
      for (int i = 0; i < got; i++) {
        if (buf[i] == '\n' || len == (int)sizeof line - 1) {
          line[len] = 0;
          handle(line, reply, sizeof reply);
          if (ws_write(out, reply, strlen(reply)) != 0) { got = 0; break; }
          len = 0;
        } else if (buf[i] != '\r') line[len++] = buf[i];
      }
    }
    ws_drop_input(in); ws_drop_output(out); ws_drop_tcp(c);
  }
}
