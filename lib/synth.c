/* synth.c: sae_synth — synthetic data with known ground-truth features (synth.h; MATH.md,
 * "Evaluation"; REFERENCE.md §2.4, HoagyC/sparse_coding sc_datasets/random_dataset.py).
 *
 * Randomness is split into Philox streams so that every piece is a function of (seed, index):
 *   stream i (i < 2^62)   row i: firing draws, values, strengths, the fallback feature, noise
 *   2^62 + b              batch b: the copula draw eps ~ N(0, I_G), z = L eps
 *   2^63                  the directions t_g
 *   2^63 + 1, 2^63 + 2    the correlation matrix R, the Lanczos start vector
 * Rows are therefore independent of how calls split them and of the thread count.
 *
 * The correlated mode needs lambda_min(Sigma) and a Cholesky factor. Both are plain C here
 * (Lanczos + Sturm bisection, Cholesky-Banachiewicz) rather than LAPACK, which libsae does not
 * link: O(G^3 / 6) for the factor, fine for G <= 4096. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "synth_internal.h"

#define STREAM_BATCH (UINT64_C(1) << 62)
#define STREAM_DIRECTIONS (UINT64_C(1) << 63)
#define STREAM_CORRELATION (STREAM_DIRECTIONS + 1)
#define STREAM_LANCZOS (STREAM_DIRECTIONS + 2)
#define MAX_ROWS ((int64_t)STREAM_BATCH) /* row streams must stay below the batch streams */

/* HoagyC's shift is -1.001 lambda_min. Lanczos returns an upper bound on lambda_min; should the
 * factorisation still fail, the shift grows by this factor (plus a tiny absolute step) and
 * the factorisation is retried. */
#define SHIFT_GROWTH 1.02
#define SHIFT_STEP 1e-9
#define MAX_FACTOR_ATTEMPTS 100
#define CHOLESKY_BLOCK 32 /* rows of L produced together */

struct sae_synth {
    const sae_allocator *allocator;
    sae_synth_options opt; /* defaults filled in */
    int threads;
    float *directions;     /* (G, d) unit rows t_g */
    float *p;              /* (G) firing probabilities of batch p_batch */
    int64_t p_batch;       /* correlated: the batch p belongs to */
    int64_t next_row;      /* rows drawn so far */
    double *chol;          /* correlated: (G, G), lower triangle L with Sigma = L L^T */
    double *work;          /* (3 G): copula draw / weights (G), water-filling scratch (2 G) */
};

/* ---- small dense kernels (double) ------------------------------------------------------------ */

/* Four independent partial sums: the O(G^3) Cholesky and the Lanczos products are all dot
 * products, and a single accumulator would wait on the add latency every step. */
static double dot(const double *a, const double *b, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* y += alpha x */
static void axpy(double alpha, const double *x, double *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

/* y = S x, S: (n, n), lds >= n */
static void symv(const double *S, int64_t n, int64_t lds, const double *x, double *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = dot(S + i * lds, x, n);
}

/* ---- smallest eigenvalue: Sturm bisection and Lanczos ---------------------------------------- */

/* Number of eigenvalues of T below x: the negative pivots of the LDL^T factorisation of
 * T - x I (Sylvester's law of inertia). A zero pivot is nudged to -pivmin (LAPACK dstebz). */
static int64_t sturm_count(const double *alpha, const double *beta, int64_t k, double x,
                           double pivmin)
{
    int64_t count = 0;
    double q = 1;
    for (int64_t i = 0; i < k; i++) {
        q = alpha[i] - x - (i > 0 ? beta[i - 1] * beta[i - 1] / q : 0.0);
        if (fabs(q) < pivmin)
            q = -pivmin;
        count += q < 0;
    }
    return count;
}

double sae__tridiag_min_eigenvalue(const double *alpha, const double *beta, int64_t k)
{
    /* Bracket: Gershgorin below; any diagonal entry (a Rayleigh quotient) above. */
    double lo = HUGE_VAL, hi = HUGE_VAL, max_beta2 = 1;
    for (int64_t i = 0; i < k; i++) {
        double left = i > 0 ? fabs(beta[i - 1]) : 0, right = i + 1 < k ? fabs(beta[i]) : 0;
        lo = fmin(lo, alpha[i] - left - right);
        hi = fmin(hi, alpha[i]);
        max_beta2 = fmax(max_beta2, right * right);
    }
    double pivmin = DBL_MIN * max_beta2;
    for (;;) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi)
            return hi;
        if (sturm_count(alpha, beta, k, mid, pivmin) >= 1)
            hi = mid;
        else
            lo = mid;
    }
}

/* Largest absolute row sum of S (n, n): a bound on |lambda| that scales the tolerances. */
static double row_sum_norm(const double *S, int64_t n, int64_t lds)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = 0;
        for (int64_t j = 0; j < n; j++)
            r += fabs(S[i * lds + j]);
        m = fmax(m, r);
    }
    return m;
}

/* w -= sum_i (w . q_i) q_i over the rows of Q (k, n), twice ("twice is enough", Parlett). */
static void reorthogonalise(double *w, const double *Q, int64_t k, int64_t n)
{
    for (int pass = 0; pass < 2; pass++)
        for (int64_t i = 0; i < k; i++)
            axpy(-dot(w, Q + i * n, n), Q + i * n, w, n);
}

sae_status sae__sym_min_eigenvalue(const double *S, int64_t n, int64_t lds, sae_rng *rng,
                                   const sae_allocator *a, double *lambda_min)
{
    int64_t kmax = n < SAE_LANCZOS_MAX_STEPS ? n : SAE_LANCZOS_MAX_STEPS;
    /* Q: (kmax, n) Lanczos vectors; w: (n); alpha, beta: (kmax) the tridiagonal T_k. */
    double *Q = sae__alloc_array(a, (size_t)((kmax + 1) * n + 2 * kmax), sizeof(double));
    if (!Q)
        return SAE_ENOMEM;
    double *w = Q + kmax * n, *alpha = w + n, *beta = alpha + kmax;
    double norm2 = 0;
    while (norm2 == 0) {
        for (int64_t i = 0; i < n; i++)
            Q[i] = sae_rng_normal(rng);
        norm2 = dot(Q, Q, n);
    }
    for (int64_t i = 0; i < n; i++)
        Q[i] /= sqrt(norm2);

    double scale = fmax(row_sum_norm(S, n, lds), DBL_MIN), theta = 0, previous = HUGE_VAL;
    for (int64_t j = 0; j < kmax; j++) {
        const double *q = Q + j * n;
        symv(S, n, lds, q, w);
        if (j > 0)
            axpy(-beta[j - 1], Q + (j - 1) * n, w, n);
        alpha[j] = dot(w, q, n);
        axpy(-alpha[j], q, w, n);
        reorthogonalise(w, Q, j + 1, n);
        beta[j] = sqrt(dot(w, w, n));
        theta = sae__tridiag_min_eigenvalue(alpha, beta, j + 1);
        /* Stop on an invariant subspace (T_k's eigenvalues are exact) or once the smallest
         * Ritz value, which only decreases, has stopped moving. */
        if (beta[j] <= 1e-12 * scale || previous - theta <= 1e-12 * scale)
            break;
        previous = theta;
        if (j + 1 < kmax)
            for (int64_t i = 0; i < n; i++)
                Q[(j + 1) * n + i] = w[i] / beta[j];
    }
    sae__free(a, Q);
    *lambda_min = theta;
    return SAE_OK;
}

/* ---- Cholesky ------------------------------------------------------------------------------- */

bool sae__cholesky_lower(double *A, int64_t n, int64_t lda)
{
    /* L_ij = (A_ij - sum_{k<j} L_ik L_jk) / L_jj, L_ii = sqrt(A_ii - sum_{k<i} L_ik^2): rows
     * of L are contiguous in row-major storage, so every inner product runs along two rows.
     * Rows are produced CHOLESKY_BLOCK at a time, column by column, so that each earlier row
     * j is read once per block rather than once per row (at G = 4096 L is 128 MiB and the
     * unblocked order is bound by memory bandwidth). The arithmetic is the same either way. */
    for (int64_t i0 = 0; i0 < n; i0 += CHOLESKY_BLOCK) {
        int64_t i1 = i0 + CHOLESKY_BLOCK < n ? i0 + CHOLESKY_BLOCK : n;
        for (int64_t j = 0; j < i1; j++) {
            const double *rj = A + j * lda;
            for (int64_t i = j > i0 ? j : i0; i < i1; i++) {
                double *ri = A + i * lda;
                if (i > j) {
                    ri[j] = (ri[j] - dot(ri, rj, j)) / rj[j];
                    continue;
                }
                double pivot = ri[i] - dot(ri, ri, i);
                if (!(pivot > 0))
                    return false;
                ri[i] = sqrt(pivot);
            }
        }
    }
    return true;
}

/* ---- firing probabilities ------------------------------------------------------------------- */

static int descending(const void *pa, const void *pb)
{
    double x = *(const double *)pa, y = *(const double *)pb;
    return (x < y) - (x > y);
}

sae_status sae__fill_probabilities(const double *w, int64_t G, double m, double *scratch,
                                   float *p)
{
    /* v: weights sorted descending; tail[k] = sum_{j >= k} v_j, summed from the small end. */
    double *v = scratch, *tail = scratch + G;
    memcpy(v, w, (size_t)G * sizeof *v);
    qsort(v, (size_t)G, sizeof *v, descending);
    int64_t positive = 0;
    while (positive < G && v[positive] > 0)
        positive++;
    if ((double)positive < m)
        return sae__fail(SAE_ENUMERIC,
                         "only %lld of %lld feature weights are non-zero, fewer than n_active = "
                         "%g (decay too small)", (long long)positive, (long long)G, m);
    tail[G - 1] = v[G - 1];
    for (int64_t k = G - 2; k >= 0; k--)
        tail[k] = tail[k + 1] + v[k];
    /* Cap the k largest at 1 and scale the rest by c = (m - k) / tail[k]; k is the first count
     * with c v_k <= 1. It exists below m: were c v_{k-1} > 1 at k = m, then 0 > tail[m]. */
    int64_t k = 0;
    while ((m - (double)k) * v[k] > tail[k])
        k++;
    double c = (m - (double)k) / tail[k];
    for (int64_t g = 0; g < G; g++)
        p[g] = (float)fmin(1.0, c * w[g]);
    return SAE_OK;
}

/* ---- options -------------------------------------------------------------------------------- */

static sae_status check_options(const sae_synth_options *o)
{
    if (!isfinite(o->n_active) || !isfinite(o->decay) || !isfinite(o->noise_std))
        return sae__fail(SAE_ENUMERIC, "sae_synth_options: n_active (%g), decay (%g) and "
                         "noise_std (%g) must be finite", o->n_active, o->decay, o->noise_std);
    if (o->d < 1 || o->n_features < 1)
        return sae__fail(SAE_EINVAL, "sae_synth_options: d (%lld) and n_features (%lld) must be "
                         "positive", (long long)o->d, (long long)o->n_features);
    /* Feature ids are int32 (matches); G * d floats and G * G doubles must be addressable. */
    if (o->n_features > INT32_MAX || o->d > INT64_MAX / 8 / o->n_features ||
        (o->correlated && o->n_features > INT64_MAX / 8 / o->n_features))
        return sae__fail(SAE_EINVAL, "sae_synth_options: %lld features of dimension %lld are "
                         "too many", (long long)o->n_features, (long long)o->d);
    if (!(o->n_active > 0) || o->n_active > (double)o->n_features)
        return sae__fail(SAE_EINVAL, "sae_synth_options: n_active = %g must be in (0, "
                         "n_features = %lld]", o->n_active, (long long)o->n_features);
    if (!(o->decay > 0) || o->decay > 1)
        return sae__fail(SAE_EINVAL, "sae_synth_options: decay = %g must be in (0, 1]", o->decay);
    if (o->noise_std < 0 || o->batch_size < 1 || o->n_threads < 0)
        return sae__fail(SAE_EINVAL, "sae_synth_options: negative noise_std (%g), batch_size "
                         "(%lld) or n_threads (%d)", o->noise_std, (long long)o->batch_size,
                         o->n_threads);
    if (o->correlated > 1 || o->reserved != 0)
        return sae__fail(SAE_EINVAL, "sae_synth_options: correlated must be 0 or 1 (got %u) and "
                         "reserved 0", o->correlated);
    return SAE_OK;
}

static sae_status read_options(const sae_synth_options *in, sae_synth_options *o)
{
    *o = (sae_synth_options)SAE_SYNTH_OPTIONS_INIT;
    sae_status s = sae__read_options(o, sizeof *o, in, "sae_synth_options");
    if (s != SAE_OK)
        return s;
    /* Zero means default (REFERENCE.md §2.4: HoagyC's toy configuration). */
    o->d = o->d ? o->d : 256;
    o->n_features = o->n_features ? o->n_features : 512;
    o->n_active = o->n_active != 0 ? o->n_active : 5;
    o->decay = o->decay != 0 ? o->decay : 0.99;
    o->batch_size = o->batch_size ? o->batch_size : 4096;
    return check_options(o);
}

/* ---- construction --------------------------------------------------------------------------- */

/* t_g = n_g / ||n_g||, n_g ~ N(0, I_d), g = 0..G-1 in order from one stream. T: (G, d). */
static void draw_directions(float *T, int64_t G, int64_t d, uint64_t seed)
{
    sae_rng rng;
    sae_rng_init(&rng, seed, STREAM_DIRECTIONS);
    for (int64_t g = 0; g < G; g++) {
        float *t = T + g * d;
        double norm2 = 0;
        while (norm2 == 0) /* redraw the (measure-zero) zero vector */
            for (int64_t i = 0; i < d; i++) {
                t[i] = sae_rng_normal(&rng);
                norm2 += (double)t[i] * t[i];
            }
        double inv = 1.0 / sqrt(norm2);
        for (int64_t i = 0; i < d; i++)
            t[i] = (float)(t[i] * inv);
    }
}

/* Sigma = (R + R^T)/2 with R ~ U[0,1]^{GxG} into S: (G, G), in full. */
static void draw_correlation(double *S, int64_t G, uint64_t seed)
{
    sae_rng rng;
    sae_rng_init(&rng, seed, STREAM_CORRELATION);
    for (int64_t i = 0; i < G * G; i++)
        S[i] = sae_rng_uniform(&rng);
    for (int64_t i = 0; i < G; i++)
        for (int64_t j = 0; j < i; j++)
            S[i * G + j] = S[j * G + i] = 0.5 * (S[i * G + j] + S[j * G + i]);
}

/* Sigma shifted by -1.001 lambda_min I when lambda_min < 0 (HoagyC generate_corr_matrix), then
 * factored in place: the lower triangle of S becomes L. The strict upper triangle keeps Sigma,
 * so a failed attempt restores the lower triangle from it and retries with a larger shift.
 * diag: (G) scratch. */
static sae_status factor_correlation(sae_synth *s, double *S, double *diag)
{
    int64_t G = s->opt.n_features;
    sae_rng rng;
    sae_rng_init(&rng, s->opt.seed, STREAM_LANCZOS);
    double lambda_min;
    sae_status st = sae__sym_min_eigenvalue(S, G, G, &rng, s->allocator, &lambda_min);
    if (st != SAE_OK)
        return st;
    double shift = lambda_min < 0 ? -1.001 * lambda_min : 0;
    for (int64_t i = 0; i < G; i++)
        diag[i] = S[i * G + i];
    for (int attempt = 0; attempt < MAX_FACTOR_ATTEMPTS; attempt++) {
        for (int64_t i = 0; i < G; i++) {
            for (int64_t j = 0; j < i; j++)
                S[i * G + j] = S[j * G + i];
            S[i * G + i] = diag[i] + shift;
        }
        if (sae__cholesky_lower(S, G, G))
            return SAE_OK;
        shift = SHIFT_GROWTH * shift + SHIFT_STEP;
    }
    return sae__fail(SAE_ENUMERIC, "the %lld x %lld correlation matrix could not be made "
                     "positive definite", (long long)G, (long long)G);
}

/* Probabilities of batch b: w_g = Phi(z_g) decay^g with z = L eps, eps ~ N(0, I_G) from the
 * batch's stream (one draw per batch, as HoagyC's generate_correlated_dataset), then water
 * filling to sum n_active. */
static sae_status batch_probabilities(sae_synth *s, int64_t b)
{
    int64_t G = s->opt.n_features;
    double *zw = s->work; /* eps, then overwritten in place by the weights */
    sae_rng rng;
    sae_rng_init(&rng, s->opt.seed, STREAM_BATCH + (uint64_t)b);
    for (int64_t g = 0; g < G; g++)
        zw[g] = sae_rng_normal(&rng);
    /* Row i of L only reads eps_0..eps_i, so going from the last row up overwrites entries no
     * longer needed. */
    for (int64_t i = G - 1; i >= 0; i--) {
        double z = dot(s->chol + i * G, zw, i + 1);
        zw[i] = 0.5 * erfc(-z / sqrt(2.0)) * pow(s->opt.decay, (double)i);
    }
    sae_status st = sae__fill_probabilities(zw, G, s->opt.n_active, s->work + G, s->p);
    if (st == SAE_OK)
        s->p_batch = b;
    return st;
}

/* Independent features: w_g = decay^g, fixed. */
static sae_status fixed_probabilities(sae_synth *s)
{
    int64_t G = s->opt.n_features;
    for (int64_t g = 0; g < G; g++)
        s->work[g] = pow(s->opt.decay, (double)g);
    return sae__fill_probabilities(s->work, G, s->opt.n_active, s->work + G, s->p);
}

static sae_status setup(sae_synth *s)
{
    int64_t G = s->opt.n_features, d = s->opt.d;
    const sae_allocator *a = s->allocator;
    s->directions = sae__alloc_array(a, (size_t)(G * d), sizeof(float));
    s->p = sae__alloc_array(a, (size_t)G, sizeof(float));
    s->work = sae__alloc_array(a, (size_t)(3 * G), sizeof(double));
    if (!s->directions || !s->p || !s->work)
        return SAE_ENOMEM;
    draw_directions(s->directions, G, d, s->opt.seed);
    if (!s->opt.correlated)
        return fixed_probabilities(s);
    s->chol = sae__alloc_array(a, (size_t)(G * G), sizeof(double));
    if (!s->chol)
        return SAE_ENOMEM;
    draw_correlation(s->chol, G, s->opt.seed);
    sae_status st = factor_correlation(s, s->chol, s->work);
    return st != SAE_OK ? st : batch_probabilities(s, 0);
}

sae_status sae_synth_create(sae_synth **out, const sae_synth_options *options)
{
    if (!out)
        return sae__fail(SAE_EINVAL, "out is NULL");
    *out = NULL;
    sae_synth_options o;
    sae_status st = read_options(options, &o);
    if (st != SAE_OK)
        return st;
    const sae_allocator *a = sae__allocator(o.allocator);
    sae_synth *s = sae__alloc_array(a, 1, sizeof *s);
    if (!s)
        return SAE_ENOMEM;
    memset(s, 0, sizeof *s);
    s->allocator = a;
    s->opt = o;
    s->threads = sae__threads(o.n_threads);
    st = setup(s);
    if (st != SAE_OK) {
        sae_synth_free(s);
        return st;
    }
    *out = s;
    return SAE_OK;
}

void sae_synth_free(sae_synth *s)
{
    if (!s)
        return;
    const sae_allocator *a = s->allocator;
    sae__free(a, s->directions);
    sae__free(a, s->p);
    sae__free(a, s->chol);
    sae__free(a, s->work);
    sae__free(a, s);
}

/* ---- sampling ------------------------------------------------------------------------------- */

/* x += coef * t, both (d). */
static void add_feature(float *x, const float *t, float coef, int64_t d)
{
    for (int64_t i = 0; i < d; i++)
        x[i] += coef * t[i];
}

/* Row `row` of the data: x (d) and, if not NULL, codes (G), with the probabilities s->p.
 * Draw order on the row's stream: per feature g a firing uniform u_g and, when u_g < p_g,
 * its value c_g and strength s_g; then, if nothing fired, the fallback feature and its
 * strength; then d noise normals. u < p (not <=) so that p = 0 never fires. */
static void sample_row(const sae_synth *s, int64_t row, float *x, float *codes)
{
    int64_t G = s->opt.n_features, d = s->opt.d;
    sae_rng rng;
    sae_rng_init(&rng, s->opt.seed, (uint64_t)row);
    memset(x, 0, (size_t)d * sizeof *x);
    if (codes)
        memset(codes, 0, (size_t)G * sizeof *codes);
    bool fired = false;
    for (int64_t g = 0; g < G; g++) {
        if (!(sae_rng_uniform(&rng) < s->p[g]))
            continue;
        float value = sae_rng_uniform(&rng);
        float coef = value * sae_rng_uniform(&rng);
        add_feature(x, s->directions + g * d, coef, d);
        if (codes)
            codes[g] = coef;
        fired = true;
    }
    if (!fired) {
        int64_t g = (int64_t)sae_rng_below(&rng, (uint64_t)G);
        float coef = sae_rng_uniform(&rng); /* value 1 times a strength */
        add_feature(x, s->directions + g * d, coef, d);
        if (codes)
            codes[g] = coef;
    }
    if (s->opt.noise_std > 0)
        for (int64_t i = 0; i < d; i++)
            x[i] += (float)(s->opt.noise_std * sae_rng_normal(&rng));
}

/* n consecutive rows from `row0`, all in one batch. x: (n, d), codes: (n, G) or NULL. */
static void sample_rows(const sae_synth *s, int64_t row0, int64_t n, float *x, int64_t ldx,
                        float *codes, int64_t ldc)
{
#pragma omp parallel for schedule(static) num_threads(s->threads) if (s->threads > 1 && n > 64)
    for (int64_t i = 0; i < n; i++)
        sample_row(s, row0 + i, x + i * ldx, codes ? codes + i * ldc : NULL);
}

static sae_status check_sample(const sae_synth *s, int64_t n, const float *x, int64_t ldx,
                               const float *codes, int64_t ldc)
{
    if (!s)
        return sae__fail(SAE_EINVAL, "synth is NULL");
    if (n < 0)
        return sae__fail(SAE_EINVAL, "row count %lld is negative", (long long)n);
    if (n > 0 && !x)
        return sae__fail(SAE_EINVAL, "x is NULL");
    if (n > 0 && ldx < s->opt.d)
        return sae__fail(SAE_ESHAPE, "leading dimension of x is %lld, needs >= %lld",
                         (long long)ldx, (long long)s->opt.d);
    if (n > 0 && codes && ldc < s->opt.n_features)
        return sae__fail(SAE_ESHAPE, "leading dimension of codes is %lld, needs >= %lld",
                         (long long)ldc, (long long)s->opt.n_features);
    if (n > MAX_ROWS - s->next_row)
        return sae__fail(SAE_EINVAL, "the generator has drawn %lld rows; %lld more exceed its "
                         "2^62 row streams", (long long)s->next_row, (long long)n);
    return SAE_OK;
}

sae_status sae_synth_sample(sae_synth *s, int64_t n, float *x, int64_t ldx, float *codes,
                            int64_t ldc)
{
    sae_status st = check_sample(s, n, x, ldx, codes, ldc);
    if (st != SAE_OK)
        return st;
    /* Correlated rows are drawn batch by batch, each with its own probabilities. */
    for (int64_t done = 0; done < n;) {
        int64_t row = s->next_row + done, len = n - done;
        if (s->opt.correlated) {
            int64_t b = row / s->opt.batch_size, end = (b + 1) * s->opt.batch_size;
            if (b != s->p_batch && (st = batch_probabilities(s, b)) != SAE_OK)
                return st;
            len = end - row < len ? end - row : len;
        }
        sample_rows(s, row, len, x + done * ldx, ldx, codes ? codes + done * ldc : NULL, ldc);
        done += len;
    }
    s->next_row += n;
    return SAE_OK;
}

/* ---- getters -------------------------------------------------------------------------------- */

const float *sae_synth_directions(const sae_synth *s) { return s ? s->directions : NULL; }

const float *sae_synth_probabilities(const sae_synth *s) { return s ? s->p : NULL; }

int64_t sae_synth_d(const sae_synth *s) { return s ? s->opt.d : 0; }

int64_t sae_synth_n_features(const sae_synth *s) { return s ? s->opt.n_features : 0; }
