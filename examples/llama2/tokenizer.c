/* tokenizer.c: llama2.c tokenizers (tok512.bin; FORMATS.md): loading with size checks, encoding
 * by greedy best-score merges with byte fallback, and decoding pieces, as llama2.c's run.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama2_internal.h"

struct llama2_tokenizer {
    const sae_allocator *allocator;
    int32_t vocab_size, max_token_length;
    char **vocab;             /* (vocab_size) NUL-terminated pieces */
    float *scores;            /* (vocab_size) merge priority */
    int32_t *sorted;          /* (vocab_size) ids sorted by piece, for lookup */
    char byte_pieces[512];    /* "\xNN\0" for each byte NN: what <0xNN> decodes to */
};

static int compare_ids(const void *a, const void *b, void *user)
{
    char *const *vocab = user;
    return strcmp(vocab[*(const int32_t *)a], vocab[*(const int32_t *)b]);
}

/* Id of the piece `s`, or -1 (binary search over the sorted ids). */
static int32_t lookup(const llama2_tokenizer *t, const char *s)
{
    int64_t lo = 0, hi = t->vocab_size - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        int c = strcmp(s, t->vocab[t->sorted[mid]]);
        if (c == 0)
            return t->sorted[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
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
    a->free(t->sorted, a->user);
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
    t->sorted = llama2__alloc(a, (size_t)vocab_size, sizeof *t->sorted);
    if (!t->vocab || !t->scores || !t->sorted) {
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
    for (int32_t i = 0; i < vocab_size; i++)
        t->sorted[i] = i;
    qsort_r(t->sorted, (size_t)vocab_size, sizeof *t->sorted, compare_ids, t->vocab);
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

/* Replace the best-scoring adjacent pair that is itself a token, until none is. buf: room for
 * two pieces. */
static void merge(const llama2_tokenizer *t, int32_t *tokens, int64_t *n, char *buf)
{
    for (;;) {
        float best = -1e10f;
        int64_t best_at = -1;
        int32_t best_id = -1;
        for (int64_t i = 0; i + 1 < *n; i++) {
            strcpy(buf, t->vocab[tokens[i]]);
            strcat(buf, t->vocab[tokens[i + 1]]);
            int32_t id = lookup(t, buf);
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

sae_status llama2_tokenizer_encode(const llama2_tokenizer *t, const char *text, int bos, int eos,
                                   int32_t *tokens, int64_t cap, int64_t *n_out)
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
    if (s == SAE_OK)
        merge(t, tokens, &n, buf);
    if (s == SAE_OK && eos)
        s = push(tokens, cap, &n, 2);
    t->allocator->free(buf, t->allocator->user);
    if (s == SAE_OK)
        *n_out = n;
    return s;
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
