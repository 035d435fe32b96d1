// kv-lb: a TCP load balancer for line protocols. kv-lb <listen-port> <ip:port>...
// (`${kv-a:7101}` in the infra file's args becomes kv-a's ip:port at plan time.)
// Each client connection is sent to the next backend (round robin); every line is relayed and
// the backend's one-line reply comes back. If a backend is down, the next one is tried; if it goes
// away before it has answered, the client gets "ERR backend lost" and its connection ends (its
// reply would never come, and it would wait for it while this one-client-at-a-time loop waited for
// its next line: a replica moved or restarted mid-request must not stop the load balancer).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../../test/fixtures/guests/p2/wasi-sockets.h"

#define MAXB 16
static uint8_t bip[MAXB][4];
static int bport[MAXB], nb = 0, next_b = 0;

static int connect_backend(int32_t net, int32_t *in, int32_t *out, int *which) {
  for (int tries = 0; tries < nb; tries++) {
    int b = next_b; next_b = (next_b + 1) % nb;
    int32_t s = ws_tcp();
    if (s < 0) continue;
    if (ws_connect(s, net, bip[b], bport[b], in, out) == NULL) { *which = b; return 0; }
    ws_drop_tcp(s);
  }
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 3) { printf("usage: kv-lb LISTEN_PORT IP:PORT...\n"); return 2; }
  int port = atoi(argv[1]);
  for (int i = 2; i < argc && nb < MAXB; i++) {
    char host[64]; snprintf(host, sizeof host, "%s", argv[i]);
    char *colon = strrchr(host, ':');
    if (!colon) { printf("kv-lb: backend %s is not ip:port\n", argv[i]); return 2; }
    *colon = 0;
    if (ws_parse_ip(host, bip[nb]) != 0) { printf("kv-lb: backend %s is not ip:port\n", argv[i]); return 2; }
    bport[nb++] = atoi(colon + 1);
  }
  // A secret from infra.yaml, sealed to this machine: the agent opens it as it starts us. Only its
  // length is ever printed.
  const char *token = getenv("KV_LB_TOKEN");
  if (!token || !*token) { printf("kv-lb: KV_LB_TOKEN is unset (a sealed value in infra.yaml)\n"); return 2; }
  printf("kv-lb: admin token of %zu bytes\n", strlen(token));
  int32_t net = ws_instance_network();
  int32_t s = ws_tcp();
  uint8_t any[4] = {0, 0, 0, 0};
  const char *e = ws_listen(s, net, any, port);
  if (e) { printf("kv-lb: bind %d: %s\n", port, e); return 1; }
  printf("kv-lb listening on port %d, %d backend(s)\n", port, nb);
  fflush(stdout);
  for (;;) {
    int32_t c, cin, cout;
    if (ws_accept_one(s, &c, &cin, &cout)) continue;
    int32_t bin, bout; int which;
    if (connect_backend(net, &bin, &bout, &which) != 0) {
      ws_write(cout, "ERR no backend\n", 15);
      ws_drop_input(cin); ws_drop_output(cout); ws_drop_tcp(c);
      continue;
    }
    char buf[4096], reply[4096];
    int got, lost = 0;
    while (!lost && (got = ws_read(cin, buf, sizeof buf)) > 0) {
      if (ws_write(bout, buf, got) != 0) { lost = 1; break; }
      int lines = 0;
      for (int i = 0; i < got; i++) if (buf[i] == '\n') lines++;
      // Relay one reply line per request line.
      int have = 0;
      while (lines > 0) {
        int n = ws_read(bin, reply + have, sizeof reply - have);
        if (n <= 0) { lost = 1; break; }
        for (int i = have; i < have + n; i++) if (reply[i] == '\n') lines--;
        have += n;
        if (lines <= 0 || have == (int)sizeof reply) { ws_write(cout, reply, have); have = 0; }
      }
    }
    if (lost) {
      printf("kv-lb: backend %d went away mid-request; the client was told\n", which);
      fflush(stdout);
      ws_write(cout, "ERR backend lost\n", 17);
    }
    ws_drop_input(bin); ws_drop_output(bout);
    ws_drop_input(cin); ws_drop_output(cout); ws_drop_tcp(c);
  }
}
