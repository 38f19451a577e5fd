/* tokenizer.c: llama2.c tokenizers (tok512.bin; FORMATS.md): loading with size checks, encoding
 * by greedy best-score merges with byte fallback, and decoding pieces, as llama2.c's run.c. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama2_internal.h"

struct llama2_tokenizer {
    const sae_allocator *allocator;
    int32_t vocab_size, max_token_length;
    char **vocab;             /* (vocab_size) NUL-terminated pieces */
    float *scores;            /* (vocab_size) merge priority */
    int32_t *table;           /* (table_mask + 1) ids by hash of their piece, -1 = empty */
    uint32_t table_mask;      /* table size - 1: a power of two >= 2 vocab_size */
    char byte_pieces[512];    /* "\xNN\0" for each byte NN: what <0xNN> decodes to */
};

/* FNV-1a of a NUL-terminated piece. */
static uint32_t hash_piece(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* The slot of the piece `s` in the table, or the empty slot where it would go: open
 * addressing with linear probing, the table at most half full. run.c does a binary search over
 * the sorted pieces; a hash finds the same piece with one or two comparisons instead of
 * log2(vocab_size), and needs no sort at load. */
static uint32_t slot_of(const llama2_tokenizer *t, const char *s)
{
    uint32_t at = hash_piece(s) & t->table_mask;
    while (t->table[at] >= 0 && strcmp(s, t->vocab[t->table[at]]))
        at = (at + 1) & t->table_mask;
    return at;
}

/* Id of the piece `s`, or -1. */
static int32_t lookup(const llama2_tokenizer *t, const char *s)
{
    return t->table[slot_of(t, s)];
}

/* Enter every id; a piece that occurs twice keeps its first (lowest) id. */
static void fill_table(llama2_tokenizer *t)
{
    for (uint32_t at = 0; at <= t->table_mask; at++)
        t->table[at] = -1;
    for (int32_t i = 0; i < t->vocab_size; i++) {
        const uint32_t at = slot_of(t, t->vocab[i]);
        if (t->table[at] < 0)
            t->table[at] = i;
    }
}

void llama2_tokenizer_free(llama2_tokenizer *t)
{
    if (!t)
        return;
    const sae_allocator *a = t->allocator;
    if (t->vocab)
        for (int32_t i = 0; i < t->vocab_size; i++)
            a->free(t->vocab[i], a->user);
    a->free(t->vocab, a->user);
    a->free(t->scores, a->user);
    a->free(t->table, a->user);
    a->free(t, a->user);
}

static sae_status read_tokens(llama2_tokenizer *t, FILE *f, const char *path)
{
    if (fread(&t->max_token_length, 4, 1, f) != 1 || t->max_token_length < 1 ||
        t->max_token_length > 65536)
        return llama2__fail(SAE_EFORMAT, "%s: missing or impossible max_token_length", path);
    for (int32_t i = 0; i < t->vocab_size; i++) {
        int32_t len;
        if (fread(&t->scores[i], 4, 1, f) != 1 || fread(&len, 4, 1, f) != 1)
            return llama2__fail(SAE_EFORMAT, "%s: truncated at token %d of %d", path, (int)i,
                                (int)t->vocab_size);
        if (len < 0 || len > t->max_token_length)
            return llama2__fail(SAE_EFORMAT, "%s: token %d has length %d (max_token_length %d)",
                                path, (int)i, (int)len, (int)t->max_token_length);
        if (!(t->vocab[i] = llama2__alloc(t->allocator, (size_t)len + 1, 1)))
            return SAE_ENOMEM;
        if (fread(t->vocab[i], 1, (size_t)len, f) != (size_t)len)
            return llama2__fail(SAE_EFORMAT, "%s: truncated in token %d", path, (int)i);
        t->vocab[i][len] = '\0';
    }
    if (fgetc(f) != EOF)
        return llama2__fail(SAE_EFORMAT, "%s: bytes after the %d tokens (wrong vocab size?)",
                            path, (int)t->vocab_size);
    return SAE_OK;
}

sae_status llama2_tokenizer_load(llama2_tokenizer **out, const char *path, int32_t vocab_size,
                                 const sae_allocator *allocator)
{
    if (out)
        *out = NULL;
    if (!out || !path || vocab_size < 259)
        return llama2__fail(SAE_EINVAL, "llama2_tokenizer_load: NULL argument or vocab_size %d "
                            "< 259 (<unk>, BOS, EOS and 256 byte tokens)", (int)vocab_size);
    const sae_allocator *a = allocator ? allocator : sae_default_allocator();
    llama2_tokenizer *t = llama2__alloc(a, 1, sizeof *t);
    if (!t)
        return SAE_ENOMEM;
    memset(t, 0, sizeof *t);
    t->allocator = a;
    t->vocab_size = vocab_size;
    t->vocab = llama2__alloc(a, (size_t)vocab_size, sizeof *t->vocab);
    t->scores = llama2__alloc(a, (size_t)vocab_size, sizeof *t->scores);
    t->table_mask = 1;
    while (t->table_mask < 2 * (uint32_t)vocab_size - 1)
        t->table_mask = 2 * t->table_mask + 1;
    t->table = llama2__alloc(a, (size_t)t->table_mask + 1, sizeof *t->table);
    if (!t->vocab || !t->scores || !t->table) {
        llama2_tokenizer_free(t);
        return SAE_ENOMEM;
    }
    memset(t->vocab, 0, (size_t)vocab_size * sizeof *t->vocab);
    FILE *f = fopen(path, "rb");
    sae_status s = f ? read_tokens(t, f, path) : llama2__fail(SAE_EIO, "cannot open %s", path);
    if (f)
        fclose(f);
    if (s != SAE_OK) {
        llama2_tokenizer_free(t);
        return s;
    }
    for (int i = 0; i < 256; i++)
        t->byte_pieces[2 * i] = (char)i;
    fill_table(t);
    *out = t;
    return SAE_OK;
}

/* Append one id, SAE_ERANGE when the caller's array is full. */
static sae_status push(int32_t *tokens, int64_t cap, int64_t *n, int32_t id)
{
    if (*n >= cap)
        return llama2__fail(SAE_ERANGE, "token array of %lld is too short", (long long)cap);
    tokens[(*n)++] = id;
    return SAE_OK;
}

/* The merges of run.c: replace the best adjacent pair whose concatenation is a token (the
 * highest score; of equal ones the leftmost; only scores above -1e10) until none is.
 *
 * merge_reference() is run.c's loop, the reference twin: it looks every pair up again after
 * each merge, O(n m) lookups for n pieces and m merges, which makes a few KB of text that
 * merges a lot take seconds and a long prompt take hours. merge() gives the same tokens with
 * O((n + m) log n) work: each pair is looked up when it forms, and the candidates wait in a
 * heap ordered as run.c chooses (score, then position); a candidate whose pieces have changed
 * since is dropped when it comes out. tests/test_llama2.c checks that the two agree. */

/* The token that pieces l and r make together, or -1 (none, or a score run.c never picks).
 * buf: room for two pieces. */
static int32_t pair_token(const llama2_tokenizer *t, int32_t l, int32_t r, char *buf)
{
    strcpy(buf, t->vocab[l]);
    strcat(buf, t->vocab[r]);
    const int32_t id = lookup(t, buf);
    return id >= 0 && t->scores[id] > -1e10f ? id : -1;
}

static void merge_reference(const llama2_tokenizer *t, int32_t *tokens, int64_t *n, char *buf)
{
    for (;;) {
        float best = -1e10f;
        int64_t best_at = -1;
        int32_t best_id = -1;
        for (int64_t i = 0; i + 1 < *n; i++) {
            int32_t id = pair_token(t, tokens[i], tokens[i + 1], buf);
            if (id != -1 && t->scores[id] > best) {
                best = t->scores[id];
                best_id = id;
                best_at = i;
            }
        }
        if (best_at < 0)
            return;
        tokens[best_at] = best_id;
        memmove(tokens + best_at + 1, tokens + best_at + 2,
                (size_t)(*n - best_at - 2) * sizeof *tokens);
        (*n)--;
    }
}

/* A possible merge: the pair whose left piece is piece `at` of the text (its index before any
 * merge: merges keep the pieces in order, so a smaller `at` is further left) gives `id`. */
typedef struct merge_candidate {
    float score;
    int32_t id;
    int64_t at;
} merge_candidate;

/* Whether a comes out of the heap before b: run.c's choice. */
static int before(const merge_candidate *a, const merge_candidate *b)
{
    return a->score > b->score || (a->score == b->score && a->at < b->at);
}

static void heap_push(merge_candidate *heap, int64_t *size, merge_candidate c)
{
    int64_t i = (*size)++;
    for (; i > 0 && before(&c, &heap[(i - 1) / 2]); i = (i - 1) / 2)
        heap[i] = heap[(i - 1) / 2];
    heap[i] = c;
}

static merge_candidate heap_pop(merge_candidate *heap, int64_t *size)
{
    const merge_candidate top = heap[0], last = heap[--*size];
    int64_t i = 0;
    for (int64_t child; (child = 2 * i + 1) < *size; i = child) {
        if (child + 1 < *size && before(&heap[child + 1], &heap[child]))
            child++;
        if (!before(&heap[child], &last))
            break;
        heap[i] = heap[child];
    }
    heap[i] = last;
    return top;
}

/* The candidate of the pair (l, r) of pieces, if it makes a token. */
static void push_pair(const llama2_tokenizer *t, const int32_t *tokens, int64_t l, int64_t r,
                      merge_candidate *heap, int64_t *size, char *buf)
{
    const int32_t id = l >= 0 && r >= 0 ? pair_token(t, tokens[l], tokens[r], buf) : -1;
    if (id >= 0)
        heap_push(heap, size, (merge_candidate){t->scores[id], id, l});
}

/* The pieces form a list (next, prev; prev -2: merged into its left neighbour). At most
 * n - 1 candidates at the start and two per merge, at most n - 1 merges: 3 n. */
static sae_status merge(const llama2_tokenizer *t, int32_t *tokens, int64_t *n, char *buf)
{
    const int64_t count = *n;
    if (count < 2)
        return SAE_OK;
    const sae_allocator *a = t->allocator;
    int64_t *next = llama2__alloc(a, (size_t)count, sizeof *next);
    int64_t *prev = llama2__alloc(a, (size_t)count, sizeof *prev);
    merge_candidate *heap = next && prev ? llama2__alloc(a, 3 * (size_t)count, sizeof *heap)
                                         : NULL;
    if (heap) {
        int64_t size = 0;
        for (int64_t i = 0; i < count; i++) {
            next[i] = i + 1 < count ? i + 1 : -1;
            prev[i] = i - 1;
            push_pair(t, tokens, i, next[i], heap, &size, buf);
        }
        while (size > 0) {
            const merge_candidate c = heap_pop(heap, &size);
            const int64_t r = next[c.at];
            if (prev[c.at] == -2 || r < 0 || pair_token(t, tokens[c.at], tokens[r], buf) != c.id)
                continue; /* out of date: a piece of the pair merged since */
            tokens[c.at] = c.id;
            next[c.at] = next[r];
            if (next[r] >= 0)
                prev[next[r]] = c.at;
            prev[r] = -2;
            push_pair(t, tokens, prev[c.at], c.at, heap, &size, buf);
            push_pair(t, tokens, c.at, next[c.at], heap, &size, buf);
        }
        int64_t kept = 0;
        for (int64_t i = 0; i >= 0; i = next[i])
            tokens[kept++] = tokens[i];
        *n = kept;
    }
    void *owned[] = {heap, prev, next};
    for (size_t i = 0; i < 3; i++)
        if (owned[i])
            a->free(owned[i], a->user);
    return heap ? SAE_OK : SAE_ENOMEM;
}

/* llama2_tokenizer_encode, with run.c's merges (reference) or the fast ones. */
static sae_status encode(const llama2_tokenizer *t, const char *text, int bos, int eos,
                         int32_t *tokens, int64_t cap, int64_t *n_out, bool reference)
{
    if (!t || !text || !tokens || !n_out)
        return llama2__fail(SAE_EINVAL, "llama2_tokenizer_encode: NULL argument");
    *n_out = 0;
    int64_t n = 0;
    sae_status s = SAE_OK;
    char *buf = llama2__alloc(t->allocator, 2 * (size_t)t->max_token_length + 8, 1);
    if (!buf)
        return SAE_ENOMEM;
    if (bos)
        s = push(tokens, cap, &n, 1);
    if (s == SAE_OK && text[0]) { /* the dummy prefix: SentencePiece adds a leading space */
        int32_t space = lookup(t, " ");
        s = push(tokens, cap, &n, space >= 0 ? space : ' ' + 3);
    }
    /* One token per UTF-8 code point (at most 4 bytes) if it is a piece, else its bytes. */
    for (const char *c = text; *c && s == SAE_OK;) {
        size_t len = 1;
        while (len < 4 && ((unsigned char)c[len] & 0xC0) == 0x80)
            len++;
        memcpy(buf, c, len);
        buf[len] = '\0';
        int32_t id = lookup(t, buf);
        if (id >= 0)
            s = push(tokens, cap, &n, id);
        for (size_t i = 0; id < 0 && i < len && s == SAE_OK; i++)
            s = push(tokens, cap, &n, (unsigned char)c[i] + 3);
        c += len;
    }
    if (s == SAE_OK && reference)
        merge_reference(t, tokens, &n, buf);
    else if (s == SAE_OK)
        s = merge(t, tokens, &n, buf);
    if (s == SAE_OK && eos)
        s = push(tokens, cap, &n, 2);
    t->allocator->free(buf, t->allocator->user);
    if (s == SAE_OK)
        *n_out = n;
    return s;
}

sae_status llama2_tokenizer_encode(const llama2_tokenizer *t, const char *text, int bos, int eos,
                                   int32_t *tokens, int64_t cap, int64_t *n_out)
{
    return encode(t, text, bos, eos, tokens, cap, n_out, false);
}

sae_status llama2__tokenizer_encode_reference(const llama2_tokenizer *t, const char *text,
                                              int bos, int eos, int32_t *tokens, int64_t cap,
                                              int64_t *n_out)
{
    return encode(t, text, bos, eos, tokens, cap, n_out, true);
}

const char *llama2_tokenizer_piece(const llama2_tokenizer *t, int32_t prev, int32_t token)
{
    if (!t || token < 0 || token >= t->vocab_size)
        return NULL;
    const char *p = t->vocab[token];
    if (prev == 1 && p[0] == ' ')
        p++;
    if (strlen(p) == 6 && strncmp(p, "<0x", 3) == 0 && isxdigit((unsigned char)p[3]) &&
        isxdigit((unsigned char)p[4]) && p[5] == '>')
        return t->byte_pieces + 2 * strtol(p + 3, NULL, 16);
    return p;
}
