// kv-client: checks the cluster end to end through the load balancer.
//   kv-client <lb-host> <lb-port> [rounds] [interval-seconds]
// lb-host is an IPv4 address or a name its grant allows it to look up (`lb`, a process of the file).
// Each round: SET a key, GET it back, PING (which store answered). Prints one status line per
// round; exits 0 after the rounds if every check passed, 1 otherwise (bounded: default 1 round).
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "../../../test/fixtures/guests/p2/wasi-sockets.h"

static int ask(uint8_t ip[4], int port, const char *req, char *reply, int n) {
  int32_t s = ws_tcp(), in, out;
  const char *e = ws_connect(s, ws_instance_network(), ip, port, &in, &out);
  if (e) { snprintf(reply, n, "connect: %s", e); return -1; }
  ws_write(out, req, strlen(req));
  int got = 0;
  while (got < n - 1) {
    // 5 s at most for each part of the answer: a load balancer replaced mid-round (its namespace
    // gone, no FIN) would otherwise hold this round, and every round after it, for ever.
    int r = ws_read_timeout(in, reply + got, n - 1 - got, 5000);
    if (r == -2) { snprintf(reply, n, "timeout"); got = (int)strlen(reply); break; }
    if (r <= 0) break;
    got += r;
    if (reply[got - 1] == '\n') break;
  }
  reply[got] = 0;
  reply[strcspn(reply, "\n")] = 0;
  ws_drop_input(in); ws_drop_output(out); ws_drop_tcp(s);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) { printf("usage: kv-client LB_HOST LB_PORT [ROUNDS] [INTERVAL]\n"); return 2; }
  uint8_t ip[4];
  const char *looked = ws_host_ip(argv[1], ip);
  if (looked) { printf("kv-client: lookup %s: %s\n", argv[1], looked); return 2; }
  int port = atoi(argv[2]), rounds = argc > 3 ? atoi(argv[3]) : 1, interval = argc > 4 ? atoi(argv[4]) : 2;
  int failures = 0;
  for (int r = 1; r <= rounds; r++) {
    char req[128], reply[256], want[128], pong[256];
    snprintf(req, sizeof req, "SET round%d value%d\n", r, r);
    ask(ip, port, req, reply, sizeof reply);
    int ok = strcmp(reply, "OK") == 0;
    snprintf(req, sizeof req, "GET round%d\n", r);
    snprintf(want, sizeof want, "VALUE value%d", r);
    ask(ip, port, req, reply, sizeof reply);
    // Round robin: the GET may reach the other replica, which does not have the key.
    int got = strcmp(reply, want) == 0 || strcmp(reply, "NOTFOUND") == 0;
    ask(ip, port, "PING\n", pong, sizeof pong);
    int pinged = strncmp(pong, "PONG ", 5) == 0;
    printf("round %d: set %s, get %s, ping %s\n", r, ok ? "ok" : "FAILED", got ? "ok" : "FAILED", pinged ? pong : "FAILED");
    fflush(stdout);
    if (!(ok && got && pinged)) failures++;
    if (r < rounds) sleep(interval);
  }
  return failures == 0 ? 0 : 1;
}
