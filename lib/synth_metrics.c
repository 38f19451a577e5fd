/* synth_metrics.c: ground-truth metrics (synth.h; MATH.md, "Evaluation"): MMCS both ways
 * (Cunningham et al.), MCC with a Hungarian matching (SAELens synthetic/evals.py), shrinkage.
 *
 * Cosines come tile by tile: both blocks of rows are normalised into small copies and
 * multiplied by BLIS, cos = a_hat b_hat^T. Normalising first (instead of scaling the raw dot
 * products) keeps large inputs from overflowing float. */
#include <math.h>
#include <string.h>

#include "synth_internal.h"

/* Floats in one normalised block of rows: tiles have min(1024, TILE_FLOATS / d) rows. */
#define TILE_FLOATS (INT64_C(1) << 20)
#define MAX_TILE_ROWS 1024

/* A set of row vectors: x (n, d), ld >= d. */
typedef struct row_set {
    const float *x;
    int64_t n, ld;
} row_set;

/* Scratch of the tiled cosine product: two normalised blocks (rows, d) and threads for BLIS. */
typedef struct tiler {
    int64_t d, rows;
    float *a_hat, *b_hat;
    int threads;
} tiler;

static sae_status check_set(row_set s, int64_t d, const char *name)
{
    if (!s.x)
        return sae__fail(SAE_EINVAL, "%s is NULL", name);
    if (s.n < 1 || d < 1)
        return sae__fail(SAE_EINVAL, "%s has shape (%lld, %lld); both must be >= 1", name,
                         (long long)s.n, (long long)d);
    if (s.ld < d)
        return sae__fail(SAE_ESHAPE, "leading dimension of %s is %lld, needs >= %lld", name,
                         (long long)s.ld, (long long)d);
    for (int64_t i = 0; i < s.n; i++) {
        int64_t bad = sae__first_nonfinite(s.x + i * s.ld, d);
        if (bad >= 0)
            return sae__fail(SAE_ENUMERIC, "%s[%lld, %lld] is %g: inputs must be finite", name,
                             (long long)i, (long long)bad, (double)s.x[i * s.ld + bad]);
    }
    return SAE_OK;
}

static sae_status tiler_init(tiler *t, int64_t d, int64_t max_rows)
{
    int64_t rows = TILE_FLOATS / d;
    rows = rows < 1 ? 1 : rows > MAX_TILE_ROWS ? MAX_TILE_ROWS : rows;
    *t = (tiler){.d = d, .rows = rows < max_rows ? rows : max_rows, .threads = sae__threads(0)};
    t->a_hat = sae__alloc_array(NULL, (size_t)(2 * t->rows * d), sizeof(float));
    t->b_hat = t->a_hat ? t->a_hat + t->rows * d : NULL;
    return t->a_hat ? SAE_OK : SAE_ENOMEM;
}

static void tiler_free(tiler *t) { sae__free(NULL, t->a_hat); }

/* out (n, d) contiguous = rows of x (n, d; ld) divided by their norms; zero rows stay zero. */
static void normalise_rows(const float *x, int64_t n, int64_t ld, int64_t d, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + i * ld;
        double s = 0;
        for (int64_t k = 0; k < d; k++)
            s += (double)r[k] * r[k];
        double inv = s > 0 ? 1.0 / sqrt(s) : 0.0;
        for (int64_t k = 0; k < d; k++)
            out[i * d + k] = (float)(r[k] * inv);
    }
}

/* C[i][j] = cos(a_{i0+i}, b_{j0+j}) for i < mi, j < nj: C (mi, nj), ldc >= nj; mi, nj <=
 * t->rows. Rounding can put |C| slightly above 1; callers clamp. */
static sae_status cosine_tile(tiler *t, row_set A, int64_t i0, int64_t mi, row_set B,
                              int64_t j0, int64_t nj, float *C, int64_t ldc)
{
    normalise_rows(A.x + i0 * A.ld, mi, A.ld, t->d, t->a_hat);
    normalise_rows(B.x + j0 * B.ld, nj, B.ld, t->d, t->b_hat);
    return sae__sgemm(false, true, mi, nj, t->d, 1.0f, t->a_hat, t->d, t->b_hat, t->d, 0.0f, C,
                      ldc, t->threads);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- MMCS ----------------------------------------------------------------------------------- */

/* sum_i max_j cos(a_i, b_j) into *sum_a and best_b[j] = max_i cos(a_i, b_j).
 * C: (t->rows, t->rows) tile; best_a: (t->rows). */
static sae_status max_cosines(tiler *t, row_set A, row_set B, float *C, float *best_a,
                              float *best_b, double *sum_a)
{
    for (int64_t j = 0; j < B.n; j++)
        best_b[j] = -1.0f;
    *sum_a = 0;
    for (int64_t i0 = 0; i0 < A.n; i0 += t->rows) {
        int64_t mi = min64(t->rows, A.n - i0);
        for (int64_t i = 0; i < mi; i++)
            best_a[i] = -1.0f;
        for (int64_t j0 = 0; j0 < B.n; j0 += t->rows) {
            int64_t nj = min64(t->rows, B.n - j0);
            sae_status s = cosine_tile(t, A, i0, mi, B, j0, nj, C, nj);
            if (s != SAE_OK)
                return s;
            for (int64_t i = 0; i < mi; i++)
                for (int64_t j = 0; j < nj; j++) {
                    float c = fminf(C[i * nj + j], 1.0f);
                    best_a[i] = fmaxf(best_a[i], c);
                    best_b[j0 + j] = fmaxf(best_b[j0 + j], c);
                }
        }
        for (int64_t i = 0; i < mi; i++)
            *sum_a += best_a[i];
    }
    return SAE_OK;
}

sae_status sae_mmcs(const float *A, int64_t na, int64_t lda, const float *B, int64_t nb,
                    int64_t ldb, int64_t d, double *mmcs_a_to_b, double *mmcs_b_to_a)
{
    row_set sa = {A, na, lda}, sb = {B, nb, ldb};
    sae_status s = check_set(sa, d, "A");
    if (s == SAE_OK)
        s = check_set(sb, d, "B");
    tiler t;
    if (s == SAE_OK)
        s = tiler_init(&t, d, na > nb ? na : nb);
    if (s != SAE_OK)
        return s;
    /* C: (rows, rows) tile, best_a: (rows), best_b: (nb). */
    float *C = sae__alloc_array(NULL, (size_t)(t.rows * (t.rows + 1) + nb), sizeof(float));
    double sum_a = 0;
    s = C ? max_cosines(&t, sa, sb, C, C + t.rows * t.rows, C + t.rows * (t.rows + 1), &sum_a)
          : SAE_ENOMEM;
    if (s == SAE_OK) {
        const float *best_b = C + t.rows * (t.rows + 1);
        double sum_b = 0;
        for (int64_t j = 0; j < nb; j++)
            sum_b += best_b[j];
        if (mmcs_a_to_b)
            *mmcs_a_to_b = sum_a / (double)na;
        if (mmcs_b_to_a)
            *mmcs_b_to_a = sum_b / (double)nb;
    }
    sae__free(NULL, C);
    tiler_free(&t);
    return s;
}

/* ---- Hungarian assignment ------------------------------------------------------------------- */

sae_status sae__assign_max(const float *C, int64_t n, int64_t m, int64_t ldc,
                           int32_t *col_of_row, const sae_allocator *a)
{
    /* Minimise cost(i, j) = -C_ij. Rows are added one at a time; each finds a shortest
     * augmenting path over the reduced costs cost - u_i - v_j (Dijkstra on dense columns),
     * then the potentials move by the path length so reduced costs stay >= 0. Index 0 is a
     * virtual column holding the row being inserted; rows and columns are 1-based below.
     * u: (n + 1), v, minv: (m + 1); p (row in column j), way (previous column), used: (m + 1). */
    double *u = sae__alloc_array(a, (size_t)(n + 1 + 2 * (m + 1)), sizeof(double));
    int64_t *p = sae__alloc_array(a, (size_t)(3 * (m + 1)), sizeof(int64_t));
    if (!u || !p) {
        sae__free(a, u);
        sae__free(a, p);
        return SAE_ENOMEM;
    }
    double *v = u + n + 1, *minv = v + m + 1;
    int64_t *way = p + m + 1, *used = way + m + 1;
    memset(u, 0, (size_t)(n + 1 + m + 1) * sizeof *u);
    memset(p, 0, (size_t)(m + 1) * sizeof *p);
    for (int64_t i = 1; i <= n; i++) {
        p[0] = i;
        int64_t j0 = 0;
        for (int64_t j = 0; j <= m; j++)
            minv[j] = INFINITY, used[j] = 0;
        do {
            used[j0] = 1;
            int64_t i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            const float *row = C + (i0 - 1) * ldc;
            for (int64_t j = 1; j <= m; j++) {
                if (used[j])
                    continue;
                double cur = -(double)row[j - 1] - u[i0] - v[j];
                if (cur < minv[j])
                    minv[j] = cur, way[j] = j0;
                if (minv[j] < delta)
                    delta = minv[j], j1 = j;
            }
            for (int64_t j = 0; j <= m; j++) {
                if (used[j])
                    u[p[j]] += delta, v[j] -= delta;
                else
                    minv[j] -= delta;
            }
            j0 = j1;
        } while (p[j0] != 0);
        do { /* flip the augmenting path back to the virtual column */
            int64_t j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0 != 0);
    }
    for (int64_t j = 1; j <= m; j++)
        if (p[j] != 0)
            col_of_row[p[j] - 1] = (int32_t)(j - 1);
    sae__free(a, u);
    sae__free(a, p);
    return SAE_OK;
}

/* ---- MCC ------------------------------------------------------------------------------------ */

/* M = |cos(r_i, c_j)| clamped to [0, 1]: (R.n, Cs.n), ld = Cs.n. */
static sae_status abs_cosines(tiler *t, row_set R, row_set Cs, float *M)
{
    for (int64_t i0 = 0; i0 < R.n; i0 += t->rows)
        for (int64_t j0 = 0; j0 < Cs.n; j0 += t->rows) {
            int64_t mi = min64(t->rows, R.n - i0), nj = min64(t->rows, Cs.n - j0);
            sae_status s = cosine_tile(t, R, i0, mi, Cs, j0, nj, M + i0 * Cs.n + j0, Cs.n);
            if (s != SAE_OK)
                return s;
        }
    for (int64_t k = 0; k < R.n * Cs.n; k++)
        M[k] = fminf(fabsf(M[k]), 1.0f);
    return SAE_OK;
}

/* The matching as seen from A: match (na) = row of B or -1. col_of_row: (r) for the row set. */
static void write_match(const int32_t *col_of_row, int64_t r, int64_t na, bool a_is_rows,
                        int32_t *match)
{
    if (a_is_rows) {
        memcpy(match, col_of_row, (size_t)na * sizeof *match);
        return;
    }
    for (int64_t i = 0; i < na; i++)
        match[i] = -1;
    for (int64_t i = 0; i < r; i++)
        match[col_of_row[i]] = (int32_t)i;
}

sae_status sae_mcc(const float *A, int64_t na, int64_t lda, const float *B, int64_t nb,
                   int64_t ldb, int64_t d, double *mcc, int32_t *match)
{
    row_set sa = {A, na, lda}, sb = {B, nb, ldb};
    sae_status s = check_set(sa, d, "A");
    if (s == SAE_OK)
        s = check_set(sb, d, "B");
    if (s == SAE_OK && (na > INT32_MAX || nb > INT32_MAX))
        return sae__fail(SAE_EINVAL, "MCC matches ids as int32; %lld x %lld rows are too many",
                         (long long)na, (long long)nb);
    if (s == SAE_OK && !mcc)
        return sae__fail(SAE_EINVAL, "mcc is NULL");
    /* The smaller set gives the rows of the assignment problem (the algorithm needs n <= m). */
    bool a_is_rows = na <= nb;
    row_set R = a_is_rows ? sa : sb, Cs = a_is_rows ? sb : sa;
    tiler t;
    if (s == SAE_OK)
        s = tiler_init(&t, d, Cs.n);
    if (s != SAE_OK)
        return s;
    float *M = sae__alloc_array(NULL, (size_t)(R.n * Cs.n), sizeof(float));
    int32_t *col_of_row = sae__alloc_array(NULL, (size_t)R.n, sizeof(int32_t));
    s = M && col_of_row ? abs_cosines(&t, R, Cs, M) : SAE_ENOMEM;
    if (s == SAE_OK)
        s = sae__assign_max(M, R.n, Cs.n, Cs.n, col_of_row, NULL);
    if (s == SAE_OK) {
        double sum = 0;
        for (int64_t i = 0; i < R.n; i++)
            sum += M[i * Cs.n + col_of_row[i]];
        *mcc = sum / (double)R.n;
        if (match)
            write_match(col_of_row, R.n, na, a_is_rows, match);
    }
    sae__free(NULL, M);
    sae__free(NULL, col_of_row);
    tiler_free(&t);
    return s;
}

/* ---- shrinkage ------------------------------------------------------------------------------ */

static double row_norm(const float *x, int64_t d)
{
    double s = 0;
    for (int64_t k = 0; k < d; k++)
        s += (double)x[k] * x[k];
    return sqrt(s);
}

sae_status sae_shrinkage(const float *x, int64_t ldx, const float *x_hat, int64_t ldx_hat,
                         int64_t n, int64_t d, double *shrinkage)
{
    sae_status s = check_set((row_set){x, n, ldx}, d, "x");
    if (s == SAE_OK)
        s = check_set((row_set){x_hat, n, ldx_hat}, d, "x_hat");
    if (s == SAE_OK && !shrinkage)
        s = sae__fail(SAE_EINVAL, "shrinkage is NULL");
    if (s != SAE_OK)
        return s;
    double sum = 0;
    int64_t rows = 0;
    for (int64_t i = 0; i < n; i++) {
        double nx = row_norm(x + i * ldx, d);
        if (nx > 0)
            sum += row_norm(x_hat + i * ldx_hat, d) / nx, rows++;
    }
    if (rows == 0)
        return sae__fail(SAE_EINVAL, "every row of x is zero: shrinkage is undefined");
    *shrinkage = sum / (double)rows;
    return SAE_OK;
}
