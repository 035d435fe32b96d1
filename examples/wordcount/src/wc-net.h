// Sockets for the WordCount stages: connect to `host:port` with retries, and the gathering side
// (reducers and collect) that waits for one delivery from each named sender.
#pragma once
#include <unistd.h>
#include "../../../test/fixtures/guests/p2/wasi-sockets.h"
#include "wc.h"

/** Split "host:port"; the host may be an IPv4 address or a name the guest's grant allows it to look up. */
static const char *wc_addr(const char *hostport, uint8_t ip[4], int *port) {
  static char host[256];
  snprintf(host, sizeof host, "%s", hostport);
  char *colon = strrchr(host, ':');
  if (!colon) return "not host:port";
  *colon = 0;
  *port = atoi(colon + 1);
  return ws_host_ip(host, ip);
}

/**
 * Send one delivery (`from NAME` line, then the payload) to host:port and wait for `ok`: the
 * receiver answers once it has the whole delivery. Retries (the receiver may not be up yet) for
 * about `seconds`; returns NULL or what went wrong last.
 */
static const char *wc_deliver(const char *to, const char *from, const wc_buf *payload, int seconds) {
  static char why[128];
  for (int attempt = 0; attempt < seconds * 10; attempt++) {
    if (attempt > 0) usleep(100000);
    uint8_t ip[4]; int port;
    const char *e = wc_addr(to, ip, &port);
    if (e) { snprintf(why, sizeof why, "%s: %s", to, e); continue; }
    int32_t s = ws_tcp(), in, out;
    if (s < 0) { snprintf(why, sizeof why, "socket: %s", ws_err(-s - 1)); continue; }
    e = ws_connect(s, ws_instance_network(), ip, port, &in, &out);
    if (e) { snprintf(why, sizeof why, "connect %s: %s", to, e); ws_drop_tcp(s); continue; }
    char head[300]; int n = snprintf(head, sizeof head, "from %s\n", from);
    char reply[8] = {0};
    int ok = ws_write(out, head, n) == 0 && ws_write(out, payload->buf, (int)payload->len) == 0 && ws_read(in, reply, 3) == 3 && memcmp(reply, "ok\n", 3) == 0;
    ws_drop_input(in); ws_drop_output(out); ws_drop_tcp(s);
    if (ok) return NULL;
    snprintf(why, sizeof why, "%s did not take the delivery", to);
  }
  return why;
}

/** Progress lines of wc_gather; collect turns them off so its log holds only the result. */
static int wc_quiet = 0;
#define wc_progress(...) do { if (!wc_quiet) { printf(__VA_ARGS__); fflush(stdout); } } while (0)

/** One expected sender: its name, the version the infra file gave it (`NAME=VERSION`), what it sent. */
typedef struct { char name[128]; char version[128]; char *data; size_t len; } wc_source;

static void wc_source_parse(wc_source *s, const char *arg) {
  const char *eq = strchr(arg, '=');
  size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
  if (n == 0 || n >= sizeof s->name) die("a --from is NAME or NAME=VERSION");
  memcpy(s->name, arg, n); s->name[n] = 0;
  snprintf(s->version, sizeof s->version, "%s", eq ? eq + 1 : "");
  for (char *p = s->version; *p; p++) if (*p == '/') *p = '_';
  s->data = NULL; s->len = 0;
}

// A delivery is kept in /data (when the process has a disk grant) under the sender's name and the
// version the infra file names: a restart that names the same version need not wait for it again.
static void wc_cache_path(const wc_source *s, char *out, size_t n) { snprintf(out, n, "/data/from-%s-%s", s->name, s->version); }

static int wc_cache_load(wc_source *s) {
  if (s->version[0] == 0) return 0;
  char p[320]; wc_cache_path(s, p, sizeof p);
  FILE *f = fopen(p, "rb");
  if (!f) return 0;
  wc_buf b = {0}; static char chunk[1 << 16]; size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) wc_put(&b, chunk, got);
  fclose(f);
  if (b.len < 4 || memcmp(b.buf + b.len - 4, "end\n", 4) != 0) { free(b.buf); return 0; }
  s->data = b.buf; s->len = b.len;
  return 1;
}

static void wc_cache_store(const wc_source *s) {
  if (s->version[0] == 0) return;
  char p[320], tmp[330]; wc_cache_path(s, p, sizeof p); snprintf(tmp, sizeof tmp, "%s.tmp", p);
  FILE *f = fopen(tmp, "wb");
  if (!f) return; // no disk grant: nothing is kept
  int ok = fwrite(s->data, 1, s->len, f) == s->len;
  ok = fclose(f) == 0 && ok;
  if (ok) rename(tmp, p); else remove(tmp);
}

/** A delivery is whole: its `from` line, then a payload that ends with the `end` line. */
static int wc_complete(const wc_buf *b) {
  const char *nl = b->len > 0 ? memchr(b->buf, '\n', b->len) : NULL;
  if (!nl) return 0;
  size_t body = (size_t)(nl + 1 - b->buf);
  return b->len - body >= 4 && memcmp(b->buf + b->len - 4, "end\n", 4) == 0;
}

/**
 * Listen on `port` until every source has a delivery (from the cache or the network), then merge
 * them all into `t`. `who` prefixes the log lines.
 */
static void wc_gather(const char *who, int port, wc_source *src, int nsrc, wc_table *t) {
  int missing = 0;
  for (int i = 0; i < nsrc; i++) {
    if (wc_cache_load(&src[i])) wc_progress("%s: %s unchanged (kept from an earlier run)\n", who, src[i].name);
    else missing++;
  }
  if (missing > 0) {
    int32_t net = ws_instance_network(), s = ws_tcp();
    uint8_t any[4] = {0, 0, 0, 0};
    const char *e = ws_listen(s, net, any, port);
    if (e) { printf("%s: listen %d: %s\n", who, port, e); fflush(stdout); exit(1); }
    wc_progress("%s: listening on port %d for %d sender(s)\n", who, port, missing);
    while (missing > 0) {
      int32_t c, in, out;
      if (ws_accept_one(s, &c, &in, &out)) continue;
      wc_buf b = {0}; static char chunk[1 << 16]; int got;
      while (!wc_complete(&b) && (got = ws_read(in, chunk, sizeof chunk)) > 0) wc_put(&b, chunk, (size_t)got);
      char *nl = b.len > 5 ? memchr(b.buf, '\n', b.len) : NULL;
      wc_source *from = NULL;
      if (nl && memcmp(b.buf, "from ", 5) == 0) {
        for (int i = 0; i < nsrc; i++) {
          size_t n = strlen(src[i].name);
          if ((size_t)(nl - b.buf) == 5 + n && memcmp(b.buf + 5, src[i].name, n) == 0) from = &src[i];
        }
      }
      size_t body = nl ? (size_t)(nl + 1 - b.buf) : 0;
      if (from && wc_complete(&b)) {
        int fresh = from->data == NULL;
        free(from->data);
        from->len = b.len - body;
        from->data = xmalloc(from->len);
        memcpy(from->data, b.buf + body, from->len);
        wc_cache_store(from);
        ws_write(out, "ok\n", 3);
        if (fresh) missing--;
        wc_progress("%s: got %zu bytes from %s\n", who, from->len, from->name);
      } else {
        wc_progress("%s: refused a delivery that is not from a named sender or is incomplete\n", who);
      }
      free(b.buf);
      ws_drop_input(in); ws_drop_output(out); ws_drop_tcp(c);
    }
    ws_drop_tcp(s);
  }
  for (int i = 0; i < nsrc; i++) {
    if (wc_parse(t, src[i].data, src[i].len) != 0) { printf("%s: the delivery from %s is malformed\n", who, src[i].name); fflush(stdout); exit(1); }
  }
}
