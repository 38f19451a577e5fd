/*
 * torch_pt.c: PyTorch .pt files (torch.save zip archives) — see torch_pt.h.
 *
 * Layout of a torch.save archive (PyTorchStreamWriter): `<prefix>/data.pkl` (the pickled object,
 * protocol 2), `<prefix>/data/<key>` (one raw little-endian storage per key), `<prefix>/version`
 * and, since torch 2.1, `<prefix>/byteorder` ("little" or "big"). Tensors are pickled as
 * REDUCE(torch._utils._rebuild_tensor_v2, (storage, storage_offset, size, stride,
 * requires_grad, backward_hooks[, metadata])) where `storage` comes from BINPERSID of
 * ('storage', torch.<X>Storage, key, location, numel).
 *
 * The interpreter keeps every object in one pool (`vals`) and refers to objects by index, so a
 * malformed pickle (cycles through the memo, shared objects) can neither crash nor leak: freeing
 * is one pass over the pool. Strings live in one arena. Nothing is recursive.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "torch_pt.h"

/* ---- limits: a state-dict pickle is ~100 bytes per tensor; these only bound bad files ------ */
#define PT_MAX_PICKLE ((int64_t)64 << 20) /* bytes of data.pkl */
#define PT_MAX_VALUES ((int64_t)1 << 20)  /* objects */
#define PT_MAX_ITEMS ((int64_t)1 << 22)   /* container slots, all containers together */
#define PT_MAX_STACK ((int64_t)1 << 20)   /* stack entries */
#define PT_MAX_MARKS 1024                 /* nested MARKs */
#define PT_MAX_MEMO ((int64_t)1 << 20)    /* memo keys are below this */
#define PT_MAX_STRING ((int64_t)1 << 20)  /* bytes of one string */
#define PT_MAX_STORAGES ((int64_t)1 << 14)
#define PT_MAX_KEY 256                    /* storage key and GLOBAL line length */

/* ---- objects --------------------------------------------------------------------------------- */
enum {
    V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE, V_TENSOR
};
static const char *const kind_names[] = {"None",   "bool", "int",    "float",   "str",   "tuple",
                                         "list",   "dict", "global", "storage", "tensor"};

/* Globals a state dict may name. Storage types are G_STORAGE + their sae_dtype. */
enum { G_ORDERED_DICT = 1, G_REBUILD_TENSOR_V2, G_REBUILD_PARAMETER, G_REBUILD_PARAM_STATE,
       G_STORAGE = 64 };

static const struct {
    const char *module, *name;
    int32_t id;
} known_globals[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE},
    {"torch", "FloatStorage", G_STORAGE + SAE_DTYPE_F32},
    {"torch", "DoubleStorage", G_STORAGE + SAE_DTYPE_F64},
    {"torch", "HalfStorage", G_STORAGE + SAE_DTYPE_F16},
    {"torch", "BFloat16Storage", G_STORAGE + SAE_DTYPE_BF16},
    {"torch", "LongStorage", G_STORAGE + SAE_DTYPE_I64},
    {"torch", "IntStorage", G_STORAGE + SAE_DTYPE_I32},
    {"torch", "ShortStorage", G_STORAGE + SAE_DTYPE_I16},
    {"torch", "CharStorage", G_STORAGE + SAE_DTYPE_I8},
    {"torch", "ByteStorage", G_STORAGE + SAE_DTYPE_U8},
    {"torch", "BoolStorage", G_STORAGE + SAE_DTYPE_BOOL},
};

typedef struct pt_value {
    int32_t kind;
    int32_t aux;       /* V_GLOBAL: G_* id; V_STORAGE: storage index; V_TENSOR: tensor index */
    union {
        int64_t i;     /* V_BOOL, V_INT */
        double f;      /* V_FLOAT */
        int64_t off;   /* V_STR: offset in the string arena (NUL-terminated there) */
    } u;
    int64_t len;       /* V_STR: bytes; containers: slots used (dict: key, value, key, ...) */
    int64_t cap;       /* containers: slots allocated */
    int32_t *items;    /* containers: object indices */
} pt_value;

typedef struct pt_storage {
    int32_t key;       /* V_STR object naming it */
    int32_t dtype;
    int64_t numel;
    unsigned char *data;
} pt_storage;

typedef struct pt_tensor {
    int32_t storage;
    int32_t ndim;
    int64_t offset, numel;
    int64_t shape[SAE_MAX_DIMS], stride[SAE_MAX_DIMS];
} pt_tensor;

struct sae__pt_file {
    const sae_allocator *a;
    char *origin;             /* the path */
    char *prefix;             /* the archive's top folder */
    zip_t *zip;               /* open while interpreting only */
    int64_t archive_size;
    uint64_t storage_comp_bytes; /* compressed bytes of the storage entries read so far */
    pt_value *vals;
    int64_t nvals, capvals, total_items;
    char *strs;               /* string arena */
    int64_t nstrs, capstrs;
    pt_storage *stors;
    int64_t nstors, capstors;
    pt_tensor *tens;
    int64_t ntens, captens;
    int32_t root;             /* the top-level dict */
    sae_tensor_info *infos;
    unsigned char **dense;    /* per info: the dense copy of a strided tensor, or NULL */
    int64_t ninfos;
};

static int32_t dtype_size(int32_t dtype)
{
    switch (dtype) {
    case SAE_DTYPE_BOOL: case SAE_DTYPE_U8: case SAE_DTYPE_I8: return 1;
    case SAE_DTYPE_I16: case SAE_DTYPE_F16: case SAE_DTYPE_BF16: return 2;
    case SAE_DTYPE_I32: case SAE_DTYPE_F32: return 4;
    case SAE_DTYPE_I64: case SAE_DTYPE_F64: return 8;
    default: return 0;
    }
}

/* ---- the interpreter's working state --------------------------------------------------------- */
typedef struct pt_parser {
    sae__pt_file *f;
    const unsigned char *buf;
    int64_t size, pos, op_pos;
    int32_t *stack;
    int64_t sp, capstack;
    int64_t marks[PT_MAX_MARKS];
    int nmarks;
    int32_t *memo;            /* -1: unset */
    int64_t capmemo, memo_count;
} pt_parser;

/* "<path>: <prefix>/data.pkl, byte <n>: <problem>". */
__attribute__((format(printf, 3, 4)))
static sae_status perr(const pt_parser *p, sae_status s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sae__fail(s, "%s: %s/data.pkl, byte %lld: %s", p->f->origin, p->f->prefix,
                     (long long)p->op_pos, msg);
}

/* Make room for `need` elements of `elem` bytes in *ptr (capacity *cap), at most `limit`.
 * The allocator has no realloc: allocate, copy, free. */
static sae_status grow(const sae_allocator *a, void **ptr, int64_t *cap, int64_t need,
                       size_t elem, int64_t limit)
{
    if (need <= *cap)
        return SAE_OK;
    if (need > limit)
        return SAE_EFORMAT; /* the caller says what overflowed */
    int64_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    if (ncap > limit)
        ncap = limit;
    void *n = sae__alloc_array(a, (size_t)ncap, elem);
    if (!n)
        return SAE_ENOMEM;
    if (*ptr)
        memcpy(n, *ptr, (size_t)*cap * elem);
    sae__free(a, *ptr);
    *ptr = n;
    *cap = ncap;
    return SAE_OK;
}

static sae_status new_value(pt_parser *p, int32_t kind, int32_t *out)
{
    sae__pt_file *f = p->f;
    sae_status s = grow(f->a, (void **)&f->vals, &f->capvals, f->nvals + 1, sizeof(pt_value),
                        PT_MAX_VALUES);
    if (s == SAE_EFORMAT)
        return perr(p, s, "more than %lld objects", (long long)PT_MAX_VALUES);
    if (s != SAE_OK)
        return s;
    pt_value *v = &f->vals[f->nvals];
    memset(v, 0, sizeof *v);
    v->kind = kind;
    *out = (int32_t)f->nvals++;
    return SAE_OK;
}

static int64_t stack_base(const pt_parser *p) { return p->nmarks ? p->marks[p->nmarks - 1] : 0; }

static sae_status push(pt_parser *p, int32_t v)
{
    sae_status s = grow(p->f->a, (void **)&p->stack, &p->capstack, p->sp + 1, sizeof(int32_t),
                        PT_MAX_STACK);
    if (s == SAE_EFORMAT)
        return perr(p, s, "stack deeper than %lld", (long long)PT_MAX_STACK);
    if (s != SAE_OK)
        return s;
    p->stack[p->sp++] = v;
    return SAE_OK;
}

static sae_status pop(pt_parser *p, int32_t *v)
{
    if (p->sp <= stack_base(p))
        return perr(p, SAE_EFORMAT, "stack underflow");
    *v = p->stack[--p->sp];
    return SAE_OK;
}

static sae_status peek(pt_parser *p, int32_t *v)
{
    if (p->sp <= stack_base(p))
        return perr(p, SAE_EFORMAT, "stack underflow");
    *v = p->stack[p->sp - 1];
    return SAE_OK;
}

/* Pop the innermost MARK: the objects above it are stack[*first .. sp). */
static sae_status pop_mark(pt_parser *p, int64_t *first)
{
    if (p->nmarks == 0)
        return perr(p, SAE_EFORMAT, "no MARK on the stack");
    *first = p->marks[--p->nmarks];
    return SAE_OK;
}

/* The object just below a MARK popped at `first` (the dict of SETITEMS, the list of APPENDS). */
static sae_status below_mark(pt_parser *p, int64_t first, int32_t *v)
{
    if (first <= stack_base(p))
        return perr(p, SAE_EFORMAT, "stack underflow (nothing below the MARK)");
    *v = p->stack[first - 1];
    return SAE_OK;
}

static sae_status need(pt_parser *p, int64_t n)
{
    if (n < 0 || n > p->size - p->pos)
        return perr(p, SAE_EFORMAT, "truncated (an argument of %lld bytes runs past the end)",
                    (long long)n);
    return SAE_OK;
}

static uint64_t read_le(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/* Append `item` to container `c`. */
static sae_status append_item(pt_parser *p, int32_t c, int32_t item)
{
    sae__pt_file *f = p->f;
    if (f->total_items >= PT_MAX_ITEMS)
        return perr(p, SAE_EFORMAT, "more than %lld container entries", (long long)PT_MAX_ITEMS);
    pt_value *v = &f->vals[c];
    sae_status s = grow(f->a, (void **)&v->items, &v->cap, v->len + 1, sizeof(int32_t),
                        PT_MAX_ITEMS);
    if (s != SAE_OK)
        return s == SAE_EFORMAT ? perr(p, s, "container too large") : s;
    v->items[v->len++] = item;
    f->total_items++;
    return SAE_OK;
}

/* A new tuple/list of stack[first .. sp), which is then popped. */
static sae_status seq_from_stack(pt_parser *p, int32_t kind, int64_t first)
{
    int32_t t;
    sae_status s = new_value(p, kind, &t);
    for (int64_t i = first; s == SAE_OK && i < p->sp; i++)
        s = append_item(p, t, p->stack[i]);
    if (s != SAE_OK)
        return s;
    p->sp = first;
    return push(p, t);
}

static sae_status new_string(pt_parser *p, const unsigned char *b, int64_t n)
{
    sae__pt_file *f = p->f;
    if (n > PT_MAX_STRING)
        return perr(p, SAE_EFORMAT, "string of %lld bytes (limit %lld)", (long long)n,
                    (long long)PT_MAX_STRING);
    if (memchr(b, 0, (size_t)n))
        return perr(p, SAE_EFORMAT, "string with a NUL byte");
    sae_status s = grow(f->a, (void **)&f->strs, &f->capstrs, f->nstrs + n + 1, 1,
                        PT_MAX_PICKLE + PT_MAX_VALUES);
    if (s != SAE_OK)
        return s == SAE_EFORMAT ? perr(p, s, "too much string data") : s;
    int32_t v = -1;
    if ((s = new_value(p, V_STR, &v)) != SAE_OK)
        return s;
    memcpy(f->strs + f->nstrs, b, (size_t)n);
    f->strs[f->nstrs + n] = '\0';
    f->vals[v].u.off = f->nstrs;
    f->vals[v].len = n;
    f->nstrs += n + 1;
    return push(p, v);
}

static const char *str_of(const sae__pt_file *f, int32_t v) { return f->strs + f->vals[v].u.off; }

static bool str_eq(const sae__pt_file *f, int32_t v, const char *s)
{
    return f->vals[v].kind == V_STR && (size_t)f->vals[v].len == strlen(s) &&
           memcmp(str_of(f, v), s, (size_t)f->vals[v].len) == 0;
}

static sae_status push_scalar(pt_parser *p, int32_t kind, int64_t i, double x)
{
    int32_t v = -1;
    sae_status s = new_value(p, kind, &v);
    if (s != SAE_OK)
        return s;
    if (kind == V_FLOAT)
        p->f->vals[v].u.f = x;
    else
        p->f->vals[v].u.i = i;
    return push(p, v);
}

/* ---- opcode names (for messages) ------------------------------------------------------------- */
static const char *opcode_name(unsigned op)
{
    switch (op) {
    case '(': return "MARK"; case '.': return "STOP"; case '0': return "POP";
    case '1': return "POP_MARK"; case '2': return "DUP"; case 'F': return "FLOAT";
    case 'I': return "INT"; case 'J': return "BININT"; case 'K': return "BININT1";
    case 'L': return "LONG"; case 'M': return "BININT2"; case 'N': return "NONE";
    case 'P': return "PERSID"; case 'Q': return "BINPERSID"; case 'R': return "REDUCE";
    case 'S': return "STRING"; case 'T': return "BINSTRING"; case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE"; case 'X': return "BINUNICODE"; case 'a': return "APPEND";
    case 'b': return "BUILD"; case 'c': return "GLOBAL"; case 'd': return "DICT";
    case '}': return "EMPTY_DICT"; case 'e': return "APPENDS"; case 'g': return "GET";
    case 'h': return "BINGET"; case 'i': return "INST"; case 'j': return "LONG_BINGET";
    case 'l': return "LIST"; case ']': return "EMPTY_LIST"; case 'o': return "OBJ";
    case 'p': return "PUT"; case 'q': return "BINPUT"; case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM"; case 't': return "TUPLE"; case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS"; case 'G': return "BINFLOAT";
    case 0x80: return "PROTO"; case 0x81: return "NEWOBJ"; case 0x82: return "EXT1";
    case 0x83: return "EXT2"; case 0x84: return "EXT4"; case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2"; case 0x87: return "TUPLE3"; case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE"; case 0x8a: return "LONG1"; case 0x8b: return "LONG4";
    case 'B': return "BINBYTES"; case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE"; case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8"; case 0x8f: return "EMPTY_SET"; case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET"; case 0x92: return "NEWOBJ_EX"; case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE"; case 0x95: return "FRAME"; case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER"; case 0x98: return "READONLY_BUFFER";
    default: return NULL;
    }
}

/* ---- globals --------------------------------------------------------------------------------- */
static sae_status push_global(pt_parser *p, const char *module, size_t mlen, const char *name,
                              size_t nlen)
{
    for (size_t i = 0; i < sizeof known_globals / sizeof known_globals[0]; i++) {
        if (strlen(known_globals[i].module) == mlen && strlen(known_globals[i].name) == nlen &&
            memcmp(known_globals[i].module, module, mlen) == 0 &&
            memcmp(known_globals[i].name, name, nlen) == 0) {
            int32_t v = -1;
            sae_status s = new_value(p, V_GLOBAL, &v);
            if (s != SAE_OK)
                return s;
            p->f->vals[v].aux = known_globals[i].id;
            return push(p, v);
        }
    }
    return perr(p, SAE_EUNSUPPORTED,
                "global %.*s.%.*s is not allowed (a state dict of tensors needs only "
                "collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter "
                "and torch.<Type>Storage)",
                (int)mlen, module, (int)nlen, name);
}

static const char *global_name(int32_t id)
{
    for (size_t i = 0; i < sizeof known_globals / sizeof known_globals[0]; i++)
        if (known_globals[i].id == id)
            return known_globals[i].name;
    return "?";
}

/* GLOBAL: "module\nname\n". */
static sae_status op_global(pt_parser *p)
{
    const char *lines[2];
    size_t lens[2];
    for (int k = 0; k < 2; k++) {
        const unsigned char *start = p->buf + p->pos;
        int64_t avail = p->size - p->pos;
        size_t span = (size_t)(avail < PT_MAX_KEY ? avail : PT_MAX_KEY);
        const unsigned char *nl = memchr(start, '\n', span);
        if (!nl)
            return perr(p, SAE_EFORMAT, "GLOBAL without a newline-terminated %s of at most %d "
                        "bytes", k ? "name" : "module", PT_MAX_KEY - 1);
        lines[k] = (const char *)start;
        lens[k] = (size_t)(nl - start);
        p->pos += (int64_t)lens[k] + 1;
    }
    return push_global(p, lines[0], lens[0], lines[1], lens[1]);
}

/* ---- storages (BINPERSID) -------------------------------------------------------------------- */
static sae_status read_entry(sae__pt_file *f, zip_int64_t index, const char *name,
                             unsigned char *dst, uint64_t size)
{
    zip_file_t *zf = zip_fopen_index(f->zip, (zip_uint64_t)index, 0);
    if (!zf) {
        return sae__fail(SAE_EFORMAT, "%s: cannot open archive entry %s: %s", f->origin, name,
                         zip_strerror(f->zip));
    }
    uint64_t got = 0;
    while (got < size) {
        zip_int64_t n = zip_fread(zf, dst + got, size - got);
        if (n < 0) {
            sae_status s = sae__fail(SAE_EFORMAT, "%s: cannot read archive entry %s: %s",
                                     f->origin, name, zip_file_strerror(zf));
            zip_fclose(zf);
            return s;
        }
        if (n == 0)
            break;
        got += (uint64_t)n;
    }
    /* One more read: libzip checks the CRC when it reaches the end of the entry. */
    unsigned char extra;
    zip_int64_t n = got == size ? zip_fread(zf, &extra, 1) : 0;
    sae_status s = SAE_OK;
    if (n < 0)
        s = sae__fail(SAE_EFORMAT, "%s: archive entry %s is corrupt: %s", f->origin, name,
                      zip_file_strerror(zf));
    else if (got != size || n > 0)
        s = sae__fail(SAE_EFORMAT, "%s: archive entry %s is %s than its header says", f->origin,
                      name, got != size ? "shorter" : "longer");
    zip_fclose(zf);
    return s;
}

/* Index, size and compressed size (comp_size, may be NULL) of archive entry `name`, checked
 * against what the archive can hold. Missing: SAE_ENOTFOUND without a message. */
static sae_status locate_entry(sae__pt_file *f, const char *name, zip_int64_t *index,
                               uint64_t *size, uint64_t *comp_size)
{
    zip_int64_t i = zip_name_locate(f->zip, name, ZIP_FL_ENC_RAW);
    if (i < 0)
        return SAE_ENOTFOUND;
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(f->zip, (zip_uint64_t)i, ZIP_FL_ENC_RAW, &st) != 0 ||
        !(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE))
        return sae__fail(SAE_EFORMAT, "%s: cannot stat archive entry %s: %s", f->origin, name,
                         zip_strerror(f->zip));
    /* Stored entries cannot be larger than the archive; deflate expands at most ~1032x. */
    bool stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
    uint64_t limit = stored ? (uint64_t)f->archive_size
                            : (uint64_t)f->archive_size * 1100u + 4096u;
    if (st.comp_size > (uint64_t)f->archive_size || st.size > limit)
        return sae__fail(SAE_EFORMAT, "%s: archive entry %s claims %llu bytes, more than the "
                         "archive of %lld bytes can hold", f->origin, name,
                         (unsigned long long)st.size, (long long)f->archive_size);
    *index = i;
    *size = st.size;
    if (comp_size)
        *comp_size = st.comp_size;
    return SAE_OK;
}

/* ('storage', torch.<X>Storage, key, location, numel) -> a V_STORAGE object on the stack. */
static sae_status op_binpersid(pt_parser *p)
{
    sae__pt_file *f = p->f;
    int32_t pid = -1;
    sae_status s = pop(p, &pid);
    if (s != SAE_OK)
        return s;
    const pt_value *t = &f->vals[pid];
    if (t->kind != V_TUPLE || t->len != 5 || !str_eq(f, t->items[0], "storage"))
        return perr(p, SAE_EUNSUPPORTED, "persistent id is not ('storage', type, key, location, "
                    "numel) but a %s of %lld items", kind_names[t->kind],
                    t->kind == V_TUPLE ? (long long)t->len : 0LL);
    int32_t type = t->items[1], key = t->items[2], loc = t->items[3], num = t->items[4];
    if (f->vals[type].kind != V_GLOBAL || f->vals[type].aux < G_STORAGE)
        return perr(p, SAE_EFORMAT, "persistent id: the storage type is a %s, not a "
                    "torch.<Type>Storage", kind_names[f->vals[type].kind]);
    if (f->vals[key].kind != V_STR || f->vals[key].len < 1 || f->vals[key].len > PT_MAX_KEY)
        return perr(p, SAE_EFORMAT, "persistent id: the storage key is not a string of 1..%d "
                    "bytes", PT_MAX_KEY);
    if (f->vals[loc].kind != V_STR)
        return perr(p, SAE_EFORMAT, "persistent id: the location is not a string");
    if (f->vals[num].kind != V_INT || f->vals[num].u.i < 0)
        return perr(p, SAE_EFORMAT, "persistent id: numel is not a non-negative int");
    int32_t dtype = f->vals[type].aux - G_STORAGE;
    int64_t numel = f->vals[num].u.i;
    const char *kname = str_of(f, key);

    int64_t idx = -1;
    for (int64_t i = 0; i < f->nstors && idx < 0; i++)
        if (strcmp(str_of(f, f->stors[i].key), kname) == 0)
            idx = i;
    if (idx >= 0) {
        /* Another view of a storage already read: it must describe it the same way. */
        if (f->stors[idx].dtype != dtype || f->stors[idx].numel != numel)
            return perr(p, SAE_EFORMAT, "storage %s is described twice differently", kname);
    } else {
        int32_t esize = dtype_size(dtype);
        if (numel > INT64_MAX / esize)
            return perr(p, SAE_EFORMAT, "storage %s: numel %lld overflows", kname,
                        (long long)numel);
        uint64_t nbytes = (uint64_t)numel * (uint64_t)esize;
        char name[PT_MAX_KEY * 2 + 16];
        snprintf(name, sizeof name, "%s/data/%s", f->prefix, kname);
        zip_int64_t zi;
        uint64_t size, comp;
        s = locate_entry(f, name, &zi, &size, &comp);
        if (s == SAE_ENOTFOUND)
            return perr(p, SAE_EFORMAT, "storage %s has no archive entry %s", kname, name);
        if (s != SAE_OK)
            return s;
        /* Central directory records may point at the same bytes: then a file of a few KB
         * holds any number of entries that each inflate to ~1000 times its size, enough to
         * exhaust memory. Distinct entries occupy distinct bytes, so the storages' compressed
         * sizes add up to at most the archive's size. */
        if (comp > (uint64_t)f->archive_size - f->storage_comp_bytes)
            return perr(p, SAE_EFORMAT, "archive entry %s: the storage entries claim more "
                        "compressed bytes than the archive of %lld bytes holds (entries that "
                        "share their data)", name, (long long)f->archive_size);
        f->storage_comp_bytes += comp;
        if (size != nbytes)
            return perr(p, SAE_EFORMAT, "archive entry %s has %llu bytes, but the storage holds "
                        "%lld x %d = %llu bytes", name, (unsigned long long)size,
                        (long long)numel, esize, (unsigned long long)nbytes);
        s = grow(f->a, (void **)&f->stors, &f->capstors, f->nstors + 1, sizeof(pt_storage),
                 PT_MAX_STORAGES);
        if (s == SAE_EFORMAT)
            return perr(p, s, "more than %lld storages", (long long)PT_MAX_STORAGES);
        if (s != SAE_OK)
            return s;
        unsigned char *data = sae__alloc_array(f->a, (size_t)(nbytes ? nbytes : 1), 1);
        if (!data)
            return SAE_ENOMEM;
        /* Registered before reading, so that close frees it whatever happens. */
        idx = f->nstors++;
        f->stors[idx] = (pt_storage){key, dtype, numel, data};
        if ((s = read_entry(f, zi, name, data, nbytes)) != SAE_OK)
            return s;
    }
    int32_t v = -1;
    if ((s = new_value(p, V_STORAGE, &v)) != SAE_OK)
        return s;
    f->vals[v].aux = (int32_t)idx;
    return push(p, v);
}

/* ---- REDUCE ---------------------------------------------------------------------------------- */
static sae_status int_tuple(pt_parser *p, int32_t v, const char *what, int32_t *ndim,
                            int64_t dims[SAE_MAX_DIMS])
{
    const pt_value *t = &p->f->vals[v];
    if (t->kind != V_TUPLE)
        return perr(p, SAE_EFORMAT, "tensor %s is a %s, not a tuple", what, kind_names[t->kind]);
    if (t->len > SAE_MAX_DIMS)
        return perr(p, SAE_EUNSUPPORTED, "tensor with %lld dimensions (at most %d)",
                    (long long)t->len, SAE_MAX_DIMS);
    for (int64_t i = 0; i < t->len; i++) {
        const pt_value *d = &p->f->vals[t->items[i]];
        if (d->kind != V_INT || d->u.i < 0)
            return perr(p, SAE_EFORMAT, "tensor %s[%lld] is not a non-negative int", what,
                        (long long)i);
        dims[i] = d->u.i;
    }
    *ndim = (int32_t)t->len;
    return SAE_OK;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
 * [, metadata]). Contiguity and bounds are checked when the tensor is taken (with its name). */
static sae_status rebuild_tensor(pt_parser *p, const pt_value *args)
{
    sae__pt_file *f = p->f;
    if (args->len != 6 && args->len != 7)
        return perr(p, SAE_EFORMAT, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %lld",
                    (long long)args->len);
    const int32_t *a = args->items;
    if (f->vals[a[0]].kind != V_STORAGE)
        return perr(p, SAE_EFORMAT, "_rebuild_tensor_v2: argument 1 is a %s, not a storage",
                    kind_names[f->vals[a[0]].kind]);
    if (f->vals[a[1]].kind != V_INT || f->vals[a[1]].u.i < 0)
        return perr(p, SAE_EFORMAT, "_rebuild_tensor_v2: storage_offset is not a non-negative "
                    "int");
    if (f->vals[a[4]].kind != V_BOOL)
        return perr(p, SAE_EFORMAT, "_rebuild_tensor_v2: requires_grad is not a bool");
    if (f->vals[a[5]].kind != V_DICT)
        return perr(p, SAE_EFORMAT, "_rebuild_tensor_v2: backward_hooks is not a dict");
    pt_tensor t;
    memset(&t, 0, sizeof t);
    int32_t nstride = 0;
    sae_status s = int_tuple(p, a[2], "size", &t.ndim, t.shape);
    if (s == SAE_OK)
        s = int_tuple(p, a[3], "stride", &nstride, t.stride);
    if (s != SAE_OK)
        return s;
    if (nstride != t.ndim)
        return perr(p, SAE_EFORMAT, "tensor with %d sizes but %d strides", t.ndim, nstride);
    t.storage = f->vals[a[0]].aux;
    t.offset = f->vals[a[1]].u.i;
    t.numel = 1;
    for (int i = 0; i < t.ndim; i++) {
        if (t.shape[i] != 0 && t.numel > INT64_MAX / t.shape[i])
            return perr(p, SAE_EFORMAT, "tensor size overflows");
        t.numel *= t.shape[i];
    }
    s = grow(f->a, (void **)&f->tens, &f->captens, f->ntens + 1, sizeof(pt_tensor),
             PT_MAX_VALUES);
    if (s != SAE_OK)
        return s == SAE_EFORMAT ? perr(p, s, "too many tensors") : s;
    int32_t v = -1;
    if ((s = new_value(p, V_TENSOR, &v)) != SAE_OK)
        return s;
    f->tens[f->ntens] = t;
    f->vals[v].aux = (int32_t)f->ntens++;
    return push(p, v);
}

static sae_status op_reduce(pt_parser *p)
{
    sae__pt_file *f = p->f;
    int32_t args = -1, fn = -1;
    sae_status s = pop(p, &args);
    if (s == SAE_OK)
        s = pop(p, &fn);
    if (s != SAE_OK)
        return s;
    if (f->vals[fn].kind != V_GLOBAL)
        return perr(p, SAE_EFORMAT, "REDUCE of a %s (not a callable)",
                    kind_names[f->vals[fn].kind]);
    const pt_value *t = &f->vals[args];
    if (t->kind != V_TUPLE)
        return perr(p, SAE_EFORMAT, "REDUCE arguments are a %s, not a tuple",
                    kind_names[t->kind]);
    switch (f->vals[fn].aux) {
    case G_ORDERED_DICT: {
        if (t->len != 0)
            return perr(p, SAE_EUNSUPPORTED, "OrderedDict called with %lld arguments (only () "
                        "is supported)", (long long)t->len);
        int32_t d;
        if ((s = new_value(p, V_DICT, &d)) != SAE_OK)
            return s;
        return push(p, d);
    }
    case G_REBUILD_TENSOR_V2:
        return rebuild_tensor(p, t);
    case G_REBUILD_PARAMETER:
    case G_REBUILD_PARAM_STATE: {
        /* _rebuild_parameter(data, requires_grad, backward_hooks[, state]): the tensor itself. */
        int64_t want = f->vals[fn].aux == G_REBUILD_PARAMETER ? 3 : 4;
        if (t->len != want || f->vals[t->items[0]].kind != V_TENSOR)
            return perr(p, SAE_EFORMAT, "%s takes (tensor, ...) of %lld items",
                        global_name(f->vals[fn].aux), (long long)want);
        return push(p, t->items[0]);
    }
    default:
        return perr(p, SAE_EUNSUPPORTED, "REDUCE of torch.%s (storages are only read through "
                    "persistent ids)", global_name(f->vals[fn].aux));
    }
}

/* ---- dict / list mutation -------------------------------------------------------------------- */
static sae_status dict_set_range(pt_parser *p, int32_t d, int64_t first, int64_t end)
{
    sae__pt_file *f = p->f;
    if (f->vals[d].kind != V_DICT)
        return perr(p, SAE_EFORMAT, "SETITEM(S) on a %s, not a dict", kind_names[f->vals[d].kind]);
    if ((end - first) % 2)
        return perr(p, SAE_EFORMAT, "SETITEMS with an odd number of objects");
    sae_status s = SAE_OK;
    for (int64_t i = first; s == SAE_OK && i < end; i++)
        s = append_item(p, d, p->stack[i]);
    return s;
}

static sae_status list_append_range(pt_parser *p, int32_t l, int64_t first, int64_t end)
{
    sae__pt_file *f = p->f;
    if (f->vals[l].kind != V_LIST)
        return perr(p, SAE_EUNSUPPORTED, "APPEND(S) on a %s, not a list",
                    kind_names[f->vals[l].kind]);
    sae_status s = SAE_OK;
    for (int64_t i = first; s == SAE_OK && i < end; i++)
        s = append_item(p, l, p->stack[i]);
    return s;
}

/* ---- memo ------------------------------------------------------------------------------------ */
static sae_status memo_put(pt_parser *p, uint64_t key)
{
    if (key >= (uint64_t)PT_MAX_MEMO)
        return perr(p, SAE_EFORMAT, "memo key %llu (limit %lld)", (unsigned long long)key,
                    (long long)PT_MAX_MEMO);
    int32_t v = -1;
    sae_status s = peek(p, &v);
    if (s != SAE_OK)
        return s;
    int64_t old = p->capmemo;
    s = grow(p->f->a, (void **)&p->memo, &p->capmemo, (int64_t)key + 1, sizeof(int32_t),
             PT_MAX_MEMO);
    if (s != SAE_OK)
        return s;
    for (int64_t i = old; i < p->capmemo; i++)
        p->memo[i] = -1;
    if (p->memo[key] < 0)
        p->memo_count++;
    p->memo[key] = v;
    return SAE_OK;
}

static sae_status memo_get(pt_parser *p, uint64_t key)
{
    if (key >= (uint64_t)p->capmemo || p->memo[key] < 0)
        return perr(p, SAE_EFORMAT, "memo key %llu is not defined", (unsigned long long)key);
    return push(p, p->memo[key]);
}

/* ---- the loop -------------------------------------------------------------------------------- */
static sae_status run_pickle(pt_parser *p, int32_t *result)
{
    sae__pt_file *f = p->f;
    sae_status s = SAE_OK;
    while (s == SAE_OK) {
        if (p->pos >= p->size) {
            p->op_pos = p->pos;
            return perr(p, SAE_EFORMAT, "ends without STOP");
        }
        p->op_pos = p->pos;
        unsigned op = p->buf[p->pos++];
        const unsigned char *arg = p->buf + p->pos;
        int32_t a = -1, b = -1, c = -1;
        int64_t first = 0;
        switch (op) {
        case 0x80: /* PROTO */
            if ((s = need(p, 1)) != SAE_OK)
                break;
            if (arg[0] < 2 || arg[0] > 5)
                return perr(p, SAE_EUNSUPPORTED, "pickle protocol %u (2..5 are read)", arg[0]);
            p->pos += 1;
            break;
        case 0x95: /* FRAME: an 8-byte length; the frame's opcodes follow in line */
            if ((s = need(p, 8)) != SAE_OK)
                break;
            if (read_le(arg, 8) > (uint64_t)(p->size - p->pos - 8))
                return perr(p, SAE_EFORMAT, "FRAME runs past the end");
            p->pos += 8;
            break;
        case '}':
            if ((s = new_value(p, V_DICT, &a)) == SAE_OK)
                s = push(p, a);
            break;
        case ']':
            if ((s = new_value(p, V_LIST, &a)) == SAE_OK)
                s = push(p, a);
            break;
        case ')':
            s = seq_from_stack(p, V_TUPLE, p->sp);
            break;
        case '(':
            if (p->nmarks >= PT_MAX_MARKS)
                return perr(p, SAE_EFORMAT, "more than %d nested MARKs", PT_MAX_MARKS);
            p->marks[p->nmarks++] = p->sp;
            break;
        case 't':
            if ((s = pop_mark(p, &first)) == SAE_OK)
                s = seq_from_stack(p, V_TUPLE, first);
            break;
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            int64_t n = (int64_t)op - 0x84;
            if (p->sp - stack_base(p) < n)
                return perr(p, SAE_EFORMAT, "stack underflow");
            s = seq_from_stack(p, V_TUPLE, p->sp - n);
            break;
        }
        case 'X': case 0x8c: case 0x8d: { /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 */
            int w = op == 'X' ? 4 : op == 0x8c ? 1 : 8;
            if ((s = need(p, w)) != SAE_OK)
                break;
            uint64_t n = read_le(arg, w);
            p->pos += w;
            if (n > (uint64_t)PT_MAX_STRING)
                return perr(p, SAE_EFORMAT, "string of %llu bytes (limit %lld)",
                            (unsigned long long)n, (long long)PT_MAX_STRING);
            if ((s = need(p, (int64_t)n)) != SAE_OK)
                break;
            const unsigned char *text = p->buf + p->pos;
            p->pos += (int64_t)n;
            s = new_string(p, text, (int64_t)n);
            break;
        }
        case 'J': /* BININT: int32 */
            if ((s = need(p, 4)) == SAE_OK) {
                p->pos += 4;
                s = push_scalar(p, V_INT, (int32_t)(uint32_t)read_le(arg, 4), 0);
            }
            break;
        case 'K': /* BININT1: uint8 */
            if ((s = need(p, 1)) == SAE_OK) {
                p->pos += 1;
                s = push_scalar(p, V_INT, arg[0], 0);
            }
            break;
        case 'M': /* BININT2: uint16 */
            if ((s = need(p, 2)) == SAE_OK) {
                p->pos += 2;
                s = push_scalar(p, V_INT, (int64_t)read_le(arg, 2), 0);
            }
            break;
        case 0x8a: { /* LONG1: n bytes, little-endian two's complement */
            if ((s = need(p, 1)) != SAE_OK)
                break;
            int n = arg[0];
            p->pos += 1;
            if (n > 8)
                return perr(p, SAE_EUNSUPPORTED, "integer of %d bytes (at most 8)", n);
            if ((s = need(p, n)) != SAE_OK)
                break;
            uint64_t u = read_le(arg + 1, n);
            if (n > 0 && n < 8 && (arg[n] & 0x80))
                u |= ~(uint64_t)0 << (8 * n);
            p->pos += n;
            int64_t i;
            memcpy(&i, &u, sizeof i);
            s = push_scalar(p, V_INT, i, 0);
            break;
        }
        case 'G': { /* BINFLOAT: big-endian double */
            if ((s = need(p, 8)) != SAE_OK)
                break;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = u << 8 | arg[i];
            double x;
            memcpy(&x, &u, sizeof x);
            p->pos += 8;
            s = push_scalar(p, V_FLOAT, 0, x);
            break;
        }
        case 0x88: s = push_scalar(p, V_BOOL, 1, 0); break;
        case 0x89: s = push_scalar(p, V_BOOL, 0, 0); break;
        case 'N': s = push_scalar(p, V_NONE, 0, 0); break;
        case 'q': /* BINPUT */
            if ((s = need(p, 1)) == SAE_OK) {
                p->pos += 1;
                s = memo_put(p, arg[0]);
            }
            break;
        case 'r': /* LONG_BINPUT */
            if ((s = need(p, 4)) == SAE_OK) {
                p->pos += 4;
                s = memo_put(p, read_le(arg, 4));
            }
            break;
        case 0x94: /* MEMOIZE */
            s = memo_put(p, (uint64_t)p->memo_count);
            break;
        case 'h': /* BINGET */
            if ((s = need(p, 1)) == SAE_OK) {
                p->pos += 1;
                s = memo_get(p, arg[0]);
            }
            break;
        case 'j': /* LONG_BINGET */
            if ((s = need(p, 4)) == SAE_OK) {
                p->pos += 4;
                s = memo_get(p, read_le(arg, 4));
            }
            break;
        case 'c':
            s = op_global(p);
            break;
        case 0x93: /* STACK_GLOBAL: module, name strings */
            if ((s = pop(p, &b)) == SAE_OK && (s = pop(p, &a)) == SAE_OK) {
                if (f->vals[a].kind != V_STR || f->vals[b].kind != V_STR)
                    return perr(p, SAE_EFORMAT, "STACK_GLOBAL of a non-string");
                s = push_global(p, str_of(f, a), (size_t)f->vals[a].len, str_of(f, b),
                                (size_t)f->vals[b].len);
            }
            break;
        case 'R':
            s = op_reduce(p);
            break;
        case 'b': /* BUILD: only the state of a dict (OrderedDict._metadata); ignored */
            if ((s = pop(p, &a)) == SAE_OK && (s = peek(p, &b)) == SAE_OK &&
                f->vals[b].kind != V_DICT)
                return perr(p, SAE_EUNSUPPORTED, "BUILD of a %s (only dicts are supported)",
                            kind_names[f->vals[b].kind]);
            break;
        case 's': /* SETITEM */
            if ((s = pop(p, &b)) == SAE_OK && (s = pop(p, &a)) == SAE_OK &&
                (s = peek(p, &c)) == SAE_OK) {
                if (f->vals[c].kind != V_DICT)
                    return perr(p, SAE_EFORMAT, "SETITEM on a %s, not a dict",
                                kind_names[f->vals[c].kind]);
                if ((s = append_item(p, c, a)) == SAE_OK)
                    s = append_item(p, c, b);
            }
            break;
        case 'u': /* SETITEMS */
            if ((s = pop_mark(p, &first)) == SAE_OK && (s = below_mark(p, first, &c)) == SAE_OK &&
                (s = dict_set_range(p, c, first, p->sp)) == SAE_OK)
                p->sp = first;
            break;
        case 'a': /* APPEND */
            if ((s = pop(p, &a)) == SAE_OK && (s = peek(p, &c)) == SAE_OK)
                s = list_append_range(p, c, p->sp, p->sp + 1); /* the slot just popped */
            break;
        case 'e': /* APPENDS */
            if ((s = pop_mark(p, &first)) == SAE_OK && (s = below_mark(p, first, &c)) == SAE_OK &&
                (s = list_append_range(p, c, first, p->sp)) == SAE_OK)
                p->sp = first;
            break;
        case 'Q':
            s = op_binpersid(p);
            break;
        case '.': /* STOP */
            if ((s = pop(p, &a)) != SAE_OK)
                return s;
            *result = a;
            return SAE_OK;
        default: {
            const char *name = opcode_name(op);
            if (name)
                return perr(p, SAE_EUNSUPPORTED, "pickle opcode %s (0x%02x) is outside the "
                            "subset torch.save writes for a state dict", name, op);
            return perr(p, SAE_EFORMAT, "unknown pickle opcode 0x%02x", op);
        }
        }
    }
    return s;
}

/* ---- the archive ----------------------------------------------------------------------------- */
/* The single "<prefix>/data.pkl" entry (prefix without '/'). */
static sae_status find_pickle(sae__pt_file *f, char **pkl_name)
{
    zip_int64_t n = zip_get_num_entries(f->zip, 0);
    const char *found = NULL;
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(f->zip, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        if (!name)
            continue;
        const char *slash = strchr(name, '/');
        if (!slash || slash == name || strcmp(slash, "/data.pkl") != 0)
            continue;
        if (found)
            return sae__fail(SAE_EFORMAT, "%s: two pickles in one archive (%s and %s)", f->origin,
                             found, name);
        found = name;
    }
    if (!found)
        return sae__fail(SAE_EFORMAT, "%s: no <folder>/data.pkl in the archive: not a file "
                         "written by torch.save", f->origin);
    size_t plen = (size_t)(strchr(found, '/') - found);
    if (plen > PT_MAX_KEY)
        return sae__fail(SAE_EFORMAT, "%s: archive folder name too long", f->origin);
    f->prefix = sae__alloc_array(f->a, plen + 1, 1);
    *pkl_name = sae__alloc_array(f->a, plen + sizeof "/data.pkl", 1);
    if (!f->prefix || !*pkl_name)
        return SAE_ENOMEM;
    memcpy(f->prefix, found, plen);
    f->prefix[plen] = '\0';
    snprintf(*pkl_name, plen + sizeof "/data.pkl", "%s/data.pkl", f->prefix);
    return SAE_OK;
}

/* torch >= 2.1 records the byte order of the storages; libsae reads little-endian only. */
static sae_status check_byteorder(sae__pt_file *f)
{
    char name[PT_MAX_KEY + 16];
    snprintf(name, sizeof name, "%s/byteorder", f->prefix);
    zip_int64_t i;
    uint64_t size;
    sae_status s = locate_entry(f, name, &i, &size, NULL);
    if (s == SAE_ENOTFOUND)
        return SAE_OK; /* older torch: the writer's native order, little-endian in practice */
    if (s != SAE_OK)
        return s;
    char text[16] = {0};
    if (size >= sizeof text)
        return sae__fail(SAE_EFORMAT, "%s: %s is %llu bytes", f->origin, name,
                         (unsigned long long)size);
    if ((s = read_entry(f, i, name, (unsigned char *)text, size)) != SAE_OK)
        return s;
    if (strcmp(text, "little") == 0)
        return SAE_OK;
    return sae__fail(SAE_EUNSUPPORTED, "%s: storages are stored %s-endian; only little-endian "
                     "files are read", f->origin, strcmp(text, "big") == 0 ? "big" : "unknown");
}

static sae_status open_archive(sae__pt_file *f, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sae__fail(SAE_ENOTFOUND, "%s: no such file", path);
    if (!S_ISREG(st.st_mode))
        return sae__fail(SAE_EFORMAT, "%s: not a regular file", path);
    f->archive_size = (int64_t)st.st_size;
    int err = 0;
    f->zip = zip_open(path, ZIP_RDONLY, &err);
    if (f->zip)
        return SAE_OK;
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    sae_status s = SAE_EFORMAT;
    if (err == ZIP_ER_NOENT)
        s = SAE_ENOTFOUND;
    else if (err == ZIP_ER_OPEN || err == ZIP_ER_READ || err == ZIP_ER_SEEK)
        s = SAE_EIO;
    else if (err == ZIP_ER_MEMORY)
        s = SAE_ENOMEM;
    if (err == ZIP_ER_NOZIP) {
        /* The legacy (torch < 1.6) format is a bare pickle stream: magic number first. */
        unsigned char head[2] = {0, 0};
        FILE *fp = fopen(path, "rb");
        size_t got = fp ? fread(head, 1, 2, fp) : 0;
        if (fp)
            fclose(fp);
        if (got == 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) {
            zip_error_fini(&ze);
            return sae__fail(SAE_EUNSUPPORTED, "%s: legacy torch.save format (a bare pickle, "
                             "torch < 1.6 or _use_new_zipfile_serialization=False); re-save it "
                             "with torch.save from torch >= 1.6", path);
        }
    }
    sae__fail(s, "%s: not a readable torch.save zip archive: %s", path, zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return s;
}

/* ---- results --------------------------------------------------------------------------------- */
/* Copy a strided tensor into a dense row-major buffer. Bounds were checked by the caller.
 * 2-D 4-byte tensors (transposed weights, the common case) go through 64 x 64 tiles. */
static void gather(unsigned char *dst, const unsigned char *src, const pt_tensor *t,
                   int32_t esize)
{
    if (t->ndim == 2 && esize == 4) {
        int64_t rows = t->shape[0], cols = t->shape[1], s0 = t->stride[0], s1 = t->stride[1];
        for (int64_t i0 = 0; i0 < rows; i0 += 64)
            for (int64_t j0 = 0; j0 < cols; j0 += 64)
                for (int64_t i = i0; i < rows && i < i0 + 64; i++)
                    for (int64_t j = j0; j < cols && j < j0 + 64; j++)
                        memcpy(dst + (size_t)(i * cols + j) * 4,
                               src + (size_t)(i * s0 + j * s1) * 4, 4);
        return;
    }
    int64_t idx[SAE_MAX_DIMS] = {0};
    for (int64_t n = 0; n < t->numel; n++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++)
            off += idx[d] * t->stride[d];
        memcpy(dst + (size_t)n * (size_t)esize, src + (size_t)off * (size_t)esize, (size_t)esize);
        for (int d = t->ndim - 1; d >= 0; d--) { /* odometer */
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
}

/* Describe tensor `t` named `name`. A contiguous tensor is a view into its storage; any other
 * layout (dictionary_learning saves transposed views: shape [F, d], stride [1, F]) is copied
 * into a dense buffer kept in *owned. */
static sae_status make_info(sae__pt_file *f, const char *name, const pt_tensor *t,
                            sae_tensor_info *out, unsigned char **owned)
{
    const pt_storage *st = &f->stors[t->storage];
    int32_t esize = dtype_size(st->dtype);
    const unsigned char *data = st->data;
    *owned = NULL;
    if (t->numel > 0) {
        /* Highest element the view touches: offset + sum (shape_d - 1) * stride_d. */
        int64_t last = t->offset, expect = 1;
        bool contiguous = true, overflow = false;
        for (int d = t->ndim - 1; d >= 0; d--) {
            int64_t span;
            overflow |= __builtin_mul_overflow(t->shape[d] - 1, t->stride[d], &span);
            overflow |= __builtin_add_overflow(last, span, &last);
            if (t->shape[d] != 1 && t->stride[d] != expect)
                contiguous = false;
            expect *= t->shape[d]; /* <= numel: cannot overflow */
        }
        if (overflow || last >= st->numel) {
            char sh[128], sd[128];
            sae__format_shape(sh, sizeof sh, t->ndim, t->shape);
            sae__format_shape(sd, sizeof sd, t->ndim, t->stride);
            return sae__fail(SAE_EFORMAT, "%s: tensor %s (shape %s, stride %s, offset %lld) "
                             "reaches past the end of its storage %s/data/%s, which holds %lld "
                             "elements", f->origin, name, sh, sd, (long long)t->offset,
                             f->prefix, str_of(f, st->key), (long long)st->numel);
        }
        data = st->data + (size_t)t->offset * (size_t)esize;
        if (!contiguous) {
            *owned = sae__alloc_array(f->a, (size_t)t->numel, (size_t)esize);
            if (!*owned)
                return SAE_ENOMEM;
            gather(*owned, data, t, esize);
            data = *owned;
        }
    }
    memset(out, 0, sizeof *out);
    out->name = name;
    out->dtype = st->dtype;
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    out->numel = t->numel;
    out->data = data;
    out->nbytes = (uint64_t)t->numel * (uint64_t)esize;
    return SAE_OK;
}

static int cmp_keys(const void *x, const void *y, void *user)
{
    const sae__pt_file *f = user;
    return strcmp(str_of(f, *(const int32_t *)x), str_of(f, *(const int32_t *)y));
}

/* Top-level dict -> tensor infos; keys must be unique strings. */
static sae_status collect(sae__pt_file *f)
{
    const pt_value *root = &f->vals[f->root];
    if (root->kind != V_DICT)
        return sae__fail(SAE_EFORMAT, "%s: the pickled object is a %s, not a dict (state dict)",
                         f->origin, kind_names[root->kind]);
    int64_t pairs = root->len / 2, ntensors = 0;
    for (int64_t i = 0; i < pairs; i++) {
        int32_t k = root->items[2 * i], v = root->items[2 * i + 1];
        if (f->vals[k].kind != V_STR)
            return sae__fail(SAE_EFORMAT, "%s: a top-level key is a %s, not a string", f->origin,
                             kind_names[f->vals[k].kind]);
        ntensors += f->vals[v].kind == V_TENSOR;
    }
    if (pairs > 1) {
        int32_t *keys = sae__alloc_array(f->a, (size_t)pairs, sizeof(int32_t));
        if (!keys)
            return SAE_ENOMEM;
        for (int64_t i = 0; i < pairs; i++)
            keys[i] = root->items[2 * i];
        qsort_r(keys, (size_t)pairs, sizeof(int32_t), cmp_keys, f);
        sae_status s = SAE_OK;
        for (int64_t i = 1; i < pairs && s == SAE_OK; i++)
            if (strcmp(str_of(f, keys[i - 1]), str_of(f, keys[i])) == 0)
                s = sae__fail(SAE_EFORMAT, "%s: top-level key '%s' appears twice", f->origin,
                              str_of(f, keys[i]));
        sae__free(f->a, keys);
        if (s != SAE_OK)
            return s;
    }
    if (ntensors > 0) {
        f->infos = sae__alloc_array(f->a, (size_t)ntensors, sizeof(sae_tensor_info));
        f->dense = sae__alloc_array(f->a, (size_t)ntensors, sizeof(unsigned char *));
        if (!f->infos || !f->dense)
            return SAE_ENOMEM;
        memset(f->dense, 0, (size_t)ntensors * sizeof(unsigned char *));
    }
    for (int64_t i = 0; i < pairs; i++) {
        int32_t k = root->items[2 * i], v = root->items[2 * i + 1];
        if (f->vals[v].kind != V_TENSOR)
            continue;
        sae_status s = make_info(f, str_of(f, k), &f->tens[f->vals[v].aux], &f->infos[f->ninfos],
                                 &f->dense[f->ninfos]);
        if (s != SAE_OK)
            return s;
        f->ninfos++;
    }
    return SAE_OK;
}

static sae_status interpret(sae__pt_file *f)
{
    char *pkl_name = NULL;
    sae_status s = find_pickle(f, &pkl_name);
    zip_int64_t index = -1;
    uint64_t size = 0;
    if (s == SAE_OK) {
        s = locate_entry(f, pkl_name, &index, &size, NULL);
        if (s == SAE_ENOTFOUND) /* cannot happen: it was listed */
            s = sae__fail(SAE_EFORMAT, "%s: %s vanished", f->origin, pkl_name);
    }
    if (s == SAE_OK && size > (uint64_t)PT_MAX_PICKLE)
        s = sae__fail(SAE_EFORMAT, "%s: %s is %llu bytes (limit %lld)", f->origin, pkl_name,
                      (unsigned long long)size, (long long)PT_MAX_PICKLE);
    if (s == SAE_OK)
        s = check_byteorder(f);
    unsigned char *buf = NULL;
    if (s == SAE_OK) {
        buf = sae__alloc_array(f->a, (size_t)(size ? size : 1), 1);
        s = buf ? read_entry(f, index, pkl_name, buf, size) : SAE_ENOMEM;
    }
    if (s == SAE_OK) {
        pt_parser p;
        memset(&p, 0, sizeof p);
        p.f = f;
        p.buf = buf;
        p.size = (int64_t)size;
        s = run_pickle(&p, &f->root);
        sae__free(f->a, p.stack);
        sae__free(f->a, p.memo);
    }
    sae__free(f->a, buf);
    sae__free(f->a, pkl_name);
    if (s == SAE_OK)
        s = collect(f);
    return s;
}

/* ---- API ------------------------------------------------------------------------------------- */
void sae__pt_close(sae__pt_file *f)
{
    if (!f)
        return;
    const sae_allocator *a = f->a;
    if (f->zip)
        zip_discard(f->zip);
    for (int64_t i = 0; i < f->nvals; i++)
        sae__free(a, f->vals[i].items);
    for (int64_t i = 0; i < f->nstors; i++)
        sae__free(a, f->stors[i].data);
    sae__free(a, f->vals);
    sae__free(a, f->strs);
    sae__free(a, f->stors);
    sae__free(a, f->tens);
    for (int64_t i = 0; f->dense && i < f->ninfos; i++)
        sae__free(a, f->dense[i]);
    sae__free(a, f->dense);
    sae__free(a, f->infos);
    sae__free(a, f->prefix);
    sae__free(a, f->origin);
    sae__free(a, f);
}

sae_status sae__pt_open(sae__pt_file **out, const char *path, const sae_allocator *a)
{
    if (!out || !path)
        return sae__fail(SAE_EINVAL, "sae__pt_open: out and path are required");
    *out = NULL;
    a = sae__allocator(a);
    sae__pt_file *f = sae__alloc_array(a, 1, sizeof *f);
    if (!f)
        return SAE_ENOMEM;
    memset(f, 0, sizeof *f);
    f->a = a;
    f->root = -1;
    f->origin = sae__strdup(a, path);
    sae_status s = f->origin ? open_archive(f, path) : SAE_ENOMEM;
    if (s == SAE_OK)
        s = interpret(f);
    if (f->zip) {
        zip_discard(f->zip);
        f->zip = NULL;
    }
    if (s != SAE_OK) {
        sae__pt_close(f);
        return s;
    }
    *out = f;
    return SAE_OK;
}

sae__tensor_set sae__pt_tensors(const sae__pt_file *f)
{
    sae__tensor_set set = {f->infos, f->ninfos, f->origin};
    return set;
}

const char *sae__pt_origin(const sae__pt_file *f) { return f->origin; }

/* Value of `key` in dict object `d` (the last one if repeated), or -1. */
static int32_t dict_find(const sae__pt_file *f, int32_t d, const char *key)
{
    const pt_value *v = &f->vals[d];
    if (v->kind != V_DICT)
        return -1;
    for (int64_t i = v->len / 2 - 1; i >= 0; i--)
        if (str_eq(f, v->items[2 * i], key))
            return v->items[2 * i + 1];
    return -1;
}

static int32_t lookup(const sae__pt_file *f, const char *key, const char *subkey)
{
    int32_t v = dict_find(f, f->root, key);
    if (v >= 0 && subkey)
        v = dict_find(f, v, subkey);
    return v;
}

bool sae__pt_has_key(const sae__pt_file *f, const char *key)
{
    return dict_find(f, f->root, key) >= 0;
}

const char *sae__pt_get_string(const sae__pt_file *f, const char *key, const char *subkey)
{
    int32_t v = lookup(f, key, subkey);
    return v >= 0 && f->vals[v].kind == V_STR ? str_of(f, v) : NULL;
}

sae_status sae__pt_get_int(const sae__pt_file *f, const char *key, const char *subkey,
                           int64_t *out)
{
    int32_t v = lookup(f, key, subkey);
    if (v < 0)
        return sae__fail(SAE_ENOTFOUND, "%s: no entry %s%s%s", f->origin, key, subkey ? "." : "",
                         subkey ? subkey : "");
    if (f->vals[v].kind != V_INT)
        return sae__fail(SAE_EFORMAT, "%s: %s%s%s is a %s, expected an int", f->origin, key,
                         subkey ? "." : "", subkey ? subkey : "", kind_names[f->vals[v].kind]);
    *out = f->vals[v].u.i;
    return SAE_OK;
}
