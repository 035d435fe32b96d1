// The counting core shared by the WordCount guests: the word rule, a hash table of words, the
// wire format between stages, and the result's order. A word is a maximal run of ASCII letters
// and digits, lowercased; every other byte separates words.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what) { printf("%s\n", what); fflush(stdout); exit(1); }
static void *xmalloc(size_t n) { void *p = malloc(n); if (!p && n) die("out of memory"); return p; }
static void *xrealloc(void *p, size_t n) { p = realloc(p, n); if (!p && n) die("out of memory"); return p; }

/** Byte -> its lowercase form when it is part of a word, 0 when it separates words. */
static uint8_t WC_CLASS[256];
static void wc_init(void) {
  for (int c = '0'; c <= '9'; c++) WC_CLASS[c] = (uint8_t)c;
  for (int c = 'a'; c <= 'z'; c++) WC_CLASS[c] = (uint8_t)c;
  for (int c = 'A'; c <= 'Z'; c++) WC_CLASS[c] = (uint8_t)(c + 32);
}

#define FNV_OFFSET 2166136261u
#define FNV_PRIME 16777619u
static inline uint32_t fnv1a(const char *s, size_t n) {
  uint32_t h = FNV_OFFSET;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * FNV_PRIME;
  return h;
}
/** The reducer that owns a word: FNV-1a 32 of the lowercased word, modulo the number of reducers. */
static inline int wc_partition(uint32_t hash, int reducers) { return (int)(hash % (uint32_t)reducers); }

// Open addressing, linear probing; words live in one growing arena.
typedef struct { uint32_t hash, len; uint64_t off, count; } wc_slot;
typedef struct { wc_slot *slots; uint32_t cap, used; char *arena; uint64_t arena_len, arena_cap; } wc_table;

static void wc_table_init(wc_table *t) {
  t->cap = 1 << 14; t->used = 0;
  t->slots = xmalloc(sizeof(wc_slot) * t->cap); memset(t->slots, 0, sizeof(wc_slot) * t->cap);
  t->arena_cap = 1 << 20; t->arena_len = 1; t->arena = xmalloc(t->arena_cap); // offset 0 = empty slot
}

static void wc_grow(wc_table *t) {
  uint32_t cap = t->cap * 2;
  wc_slot *s = xmalloc(sizeof(wc_slot) * cap); memset(s, 0, sizeof(wc_slot) * cap);
  for (uint32_t i = 0; i < t->cap; i++) {
    if (t->slots[i].off == 0) continue;
    uint32_t j = t->slots[i].hash & (cap - 1);
    while (s[j].off != 0) j = (j + 1) & (cap - 1);
    s[j] = t->slots[i];
  }
  free(t->slots); t->slots = s; t->cap = cap;
}

/** Add `count` to the word w[0..n) whose FNV-1a hash is `h`. */
static inline void wc_add(wc_table *t, const char *w, uint32_t n, uint32_t h, uint64_t count) {
  uint32_t mask = t->cap - 1, i = h & mask;
  for (;;) {
    wc_slot *s = &t->slots[i];
    if (s->off == 0) break;
    if (s->hash == h && s->len == n && memcmp(t->arena + s->off, w, n) == 0) { s->count += count; return; }
    i = (i + 1) & mask;
  }
  if (t->arena_len + n > t->arena_cap) {
    while (t->arena_len + n > t->arena_cap) t->arena_cap *= 2;
    t->arena = xrealloc(t->arena, t->arena_cap);
  }
  memcpy(t->arena + t->arena_len, w, n);
  t->slots[i] = (wc_slot){h, n, t->arena_len, count};
  t->arena_len += n;
  if (++t->used * 10 > t->cap * 7) wc_grow(t);
}

/** Streams text through the word rule into a table; a word may span calls to wc_feed. */
typedef struct { char *word; uint32_t len, cap, hash; } wc_tokenizer;

static inline void wc_flush_word(wc_tokenizer *k, wc_table *t) {
  if (k->len > 0) wc_add(t, k->word, k->len, k->hash, 1);
  k->len = 0; k->hash = FNV_OFFSET;
}

static void wc_feed(wc_tokenizer *k, wc_table *t, const uint8_t *buf, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t c = WC_CLASS[buf[i]];
    if (c == 0) { if (k->len > 0) wc_flush_word(k, t); continue; }
    if (k->len == k->cap) { k->cap = k->cap ? k->cap * 2 : 64; k->word = xrealloc(k->word, k->cap); }
    k->word[k->len++] = (char)c;
    k->hash = (k->hash ^ c) * FNV_PRIME;
  }
}

/** Count every word of a file into the table; returns bytes read or -1 when it cannot be opened. */
static long long wc_count_file(const char *path, wc_table *t) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  static uint8_t buf[1 << 20];
  wc_tokenizer k = {0}; k.hash = FNV_OFFSET;
  long long total = 0;
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) { wc_feed(&k, t, buf, got); total += (long long)got; }
  wc_flush_word(&k, t);
  free(k.word);
  fclose(f);
  return total;
}

// The wire format between stages (and of the reducers' cache files): one line `word<TAB>count`
// per word, then `end`. Words never hold a tab or a newline, so no escaping is needed.
typedef struct { char *buf; size_t len, cap; } wc_buf;
static void wc_put(wc_buf *b, const char *s, size_t n) {
  if (b->len + n > b->cap) { while (b->len + n > b->cap) b->cap = b->cap ? b->cap * 2 : 1 << 16; b->buf = xrealloc(b->buf, b->cap); }
  memcpy(b->buf + b->len, s, n); b->len += n;
}
static void wc_put_entry(wc_buf *b, const char *w, uint32_t n, uint64_t count) {
  char num[24]; int m = snprintf(num, sizeof num, "\t%llu\n", (unsigned long long)count);
  wc_put(b, w, n); wc_put(b, num, (size_t)m);
}

/** Parse `word<TAB>count` lines ending with `end` into the table; returns 0, or -1 when `end` is missing or a line is malformed. */
static int wc_parse(wc_table *t, const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const char *line = s + i;
    const char *nl = memchr(line, '\n', n - i);
    if (!nl) return -1;
    size_t len = (size_t)(nl - line);
    i += len + 1;
    if (len == 3 && memcmp(line, "end", 3) == 0) return i == n ? 0 : -1;
    const char *tab = memchr(line, '\t', len);
    if (!tab || tab == line) return -1;
    uint32_t wl = (uint32_t)(tab - line);
    uint64_t count = 0;
    for (const char *p = tab + 1; p < nl; p++) { if (*p < '0' || *p > '9') return -1; count = count * 10 + (uint64_t)(*p - '0'); }
    wc_add(t, line, wl, fnv1a(line, wl), count);
  }
  return -1;
}

static const wc_table *wc_sort_table;
static int wc_cmp(const void *x, const void *y) {
  const wc_slot *a = *(wc_slot *const *)x, *b = *(wc_slot *const *)y;
  if (a->count != b->count) return a->count > b->count ? -1 : 1;
  uint32_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(wc_sort_table->arena + a->off, wc_sort_table->arena + b->off, n);
  if (c != 0) return c;
  return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

/** The result: `word<TAB>count` by count descending then word ascending (bytes), then the total line. */
static void wc_result(const wc_table *t, wc_buf *out) {
  wc_slot **order = xmalloc(sizeof(wc_slot *) * (t->used + 1));
  uint32_t n = 0;
  uint64_t total = 0;
  for (uint32_t i = 0; i < t->cap; i++) if (t->slots[i].off != 0) { order[n++] = &t->slots[i]; total += t->slots[i].count; }
  wc_sort_table = t;
  qsort(order, n, sizeof *order, wc_cmp);
  for (uint32_t i = 0; i < n; i++) wc_put_entry(out, t->arena + order[i]->off, order[i]->len, order[i]->count);
  char line[96]; int m = snprintf(line, sizeof line, "total %llu words, %u distinct\n", (unsigned long long)total, n);
  wc_put(out, line, (size_t)m);
  free(order);
}
