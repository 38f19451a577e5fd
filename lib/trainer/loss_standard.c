/* loss_standard.c: ReLU + L1 loss and its backward, by dense products or, when the codes are
 * sparse, by the sparse backward of TopK (MATH.md "Sparse backward"), chosen per batch.
 *
 *   f = ReLU(x' W_enc + b_enc)                   (n, F)   in place over the product
 *   r = f W_dec + b_dec - x                      (n, d)
 *   L = mse(r) + lambda sum_b rho_b sum_j f_bj w_j
 *       rho_b = 1/n (1/(n ||x_b||) for the OpenAI-normalised L1), w_j = ||d_j|| or 1
 *   G = dL/dx_hat = a_b r_b
 *   dL/dpre = (G W_dec^T + lambda rho_b w_j) [f > 0]    (n, F)
 *   dW_dec  = f^T G (+ lambda (sum_b rho_b f_bj) d_j / ||d_j|| for decoder-norm weights)
 *   dW_encT = dL/dpre^T x'                        (F, d)
 *   db_enc  = sum_b dL/dpre_b,  db_dec = sum_b G_b - db_enc W_enc^T
 *
 * Both paths start with the encoder product in column tiles (loss_common.c), each tile turned
 * into codes right after its product, while in cache: f = ReLU(t + b_enc), per-(row, tile)
 * L1 and L0 partial sums, per-feature sum_b rho_b f_bj and firing.
 * Dense path (L0 ~ F/2 at a random init): four more products of n x F x d, in tiles that the
 * threads take dynamically (no thread waits for another inside a product):
 *   decode, row tiles:              x_hat = f W_dec, then r and G per row;
 *   per column tile J of features, in a per-thread (n, |J|) scratch P:
 *     P = G W_dec[J]^T;  P = (P + lambda rho_b w_j) [f > 0];  db_enc[J] = column sums of P;
 *     dW_dec[J] = f[:, J]^T G;  dW_encT[J] = P^T x'.
 *   dL/dpre is never stored whole: the codes are the only (n, F) array.
 * Sparse path (mean L0 <= SAE__RELU_SPARSE_WIDTH(F)): the positive codes as row lists (CSR),
 * each row decoded from its own decoder rows with the dot products q_bj = r_b . d_j taken
 * while those rows are in cache (sae__decode_dots), dL/dpre_bj = a_b q_bj + lambda rho_b w_j,
 * and the weight gradients summed per feature from the lists (sparse_grad.c): only the encoder
 * product is dense. Both paths give the same sums up to float rounding.
 * Every per-row and per-feature sum runs in a fixed order (tile by tile, rows in order), so the
 * results do not depend on which thread did what. */
#include <math.h>
#include <string.h>

#include <omp.h>

#include "trainer_internal.h"

/* Features per column tile of the dense backward: the per-thread scratch is (n, BACKWARD_TILE)
 * floats (8 MiB at n = 4096). */
#define BACKWARD_TILE 512
/* Rows per tile of the decode product x_hat = f W_dec: below ~300 rows BLIS takes its
 * small-matrix path, 30% slower at this shape (k = F). */
#define DECODE_TILE 512

static int64_t encode_tiles(int64_t F) { return (F + SAE__ENCODE_TILE - 1) / SAE__ENCODE_TILE; }

/* Floats of the per-thread backward tiles at the start of the scratch (even: doubles follow). */
static int64_t tile_floats(const sae__train_cfg *c, int64_t n)
{
    const int64_t tile = c->F < BACKWARD_TILE ? c->F : BACKWARD_TILE;
    return ((int64_t)c->threads * n * tile + 1) / 2 * 2;
}

int64_t sae__standard_scratch_floats(const sae__train_cfg *c, int64_t n)
{
    /* the backward tiles, then the (n, tiles, 2) doubles of the encoder tiles' partial sums */
    return tile_floats(c, n) + 4 * n * encode_tiles(c->F);
}

/* What the tile epilogues need. */
typedef struct std_ctx {
    sae_trainer *t;
    const float *wj; /* (F) L1 weights ||d_j||, or NULL for 1 */
    double *part;    /* (n, tiles, 2): L1 and L0 of each row within each encoder tile */
    int64_t tiles;
} std_ctx;

/* f = ReLU(t + b_enc) on one row piece (w) in place, the column sums col += rho f and
 * count += [f > 0]; returns the piece's L0. Simple loops over the piece (in L1), each
 * vectorised without branches. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static int64_t relu_piece(int64_t w, float *restrict f, const float *restrict b_enc, double rho,
                          double *restrict col, int32_t *restrict count)
{
    for (int64_t j = 0; j < w; j++) {
        const float v = f[j] + b_enc[j];
        f[j] = v > 0.0f ? v : 0.0f;
    }
    for (int64_t j = 0; j < w; j++)
        col[j] += rho * (double)f[j];
    int32_t positive = 0;
    for (int64_t j = 0; j < w; j++) {
        const int32_t on = f[j] > 0.0f;
        count[j] += on;
        positive += on;
    }
    return positive;
}

/* Encoder tile epilogue: codes in place, partial sums (see the top of the file). */
static void codes_tile(void *user, int64_t r0, int64_t r1, int64_t c0, int64_t c1)
{
    const std_ctx *s = user;
    sae_trainer *t = s->t;
    sae__workspace *w = &t->ws;
    const int64_t F = t->cfg.F, width = c1 - c0, tile = c0 / SAE__ENCODE_TILE;
    double col[SAE__ENCODE_TILE] = {0};
    int32_t count[SAE__ENCODE_TILE] = {0};
    for (int64_t b = r0; b < r1; b++) {
        float *fb = w->pre + b * F + c0;
        const int64_t positive = relu_piece(width, fb, t->p.b_enc + c0, w->row_weight[b], col,
                                            count);
        double *part = s->part + (b * s->tiles + tile) * 2;
        part[0] = s->wj ? sae__dot_dbl(fb, s->wj + c0, width) : sae__sum_dbl(fb, width);
        part[1] = (double)positive;
    }
    for (int64_t j = 0; j < width; j++) {
        w->col_tmp[c0 + j] = (float)col[j];
        w->fired[c0 + j] = count[j] > 0;
    }
}

/* dW_dec rows [j0, j1) += lambda (sum_b rho_b f_bj) d_j / ||d_j||: the decoder-norm L1's share
 * (torch's norm backward is 0 at a zero row). */
static void l1_norm_share(sae_trainer *t, const float *wj, double l1_coef, int64_t j0,
                          int64_t j1)
{
    const int64_t d = t->cfg.d_in;
    for (int64_t j = j0; j < j1; j++) {
        if (wj[j] == 0.0f)
            continue;
        const float a = (float)(l1_coef * t->ws.col_tmp[j] / wj[j]);
        for (int64_t i = 0; i < d; i++)
            t->gp.W_dec[j * d + i] += a * t->p.W_dec[j * d + i];
    }
}

/* g where on, else +0, by masking the bits: the compiler vectorises this (a select between g
 * and 0 it leaves as a branch, as g's sum could trap). */
static inline float keep_if(float g, bool on)
{
    uint32_t bits;
    memcpy(&bits, &g, sizeof bits);
    bits &= -(uint32_t)on;
    memcpy(&g, &bits, sizeof g);
    return g;
}

/* dL/dpre of one row piece (w) of the scratch P: (P + l1_row w_j) [f > 0] (w_j = 1 when wj is
 * NULL), column sums into col. One branch-free loop per case, vectorised. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void mask_piece(int64_t w, float *restrict p, const float *restrict f, float l1_row,
                       const float *restrict wj, double *restrict col)
{
    if (wj)
        for (int64_t j = 0; j < w; j++)
            p[j] = keep_if(p[j] + l1_row * wj[j], f[j] > 0.0f);
    else
        for (int64_t j = 0; j < w; j++)
            p[j] = keep_if(p[j] + l1_row, f[j] > 0.0f);
    for (int64_t j = 0; j < w; j++)
        col[j] += (double)p[j];
}

/* Dense backward of the features [j0, j1) (see the top of the file). P: (n, j1 - j0). */
static sae_status backward_tile(sae_trainer *t, int64_t n, const float *wj, double l1_coef,
                                int64_t j0, int64_t j1, float *P)
{
    const int64_t F = t->cfg.F, d = t->cfg.d_in, tw = j1 - j0;
    sae__workspace *w = &t->ws;
    const float *f = w->pre + j0, *G = w->G;
    sae_status s = sae__sgemm(false, true, n, tw, d, 1.0f, G, d, t->p.W_dec + j0 * d, d, 0.0f, P,
                              tw, 1);
    if (s != SAE_OK)
        return s;
    double col[BACKWARD_TILE] = {0};
    for (int64_t b = 0; b < n; b++)
        mask_piece(tw, P + b * tw, f + b * F, (float)(l1_coef * w->row_weight[b]),
                   wj ? wj + j0 : NULL, col);
    for (int64_t j = 0; j < tw; j++)
        t->gp.b_enc[j0 + j] = (float)col[j];
    if ((s = sae__sgemm(true, false, tw, d, n, 1.0f, f, F, G, d, 0.0f, t->gp.W_dec + j0 * d, d,
                        1)) ||
        (s = sae__sgemm(true, false, tw, d, n, 1.0f, P, tw, w->xp, d, 0.0f,
                        t->gp.W_encT + j0 * d, d, 1)))
        return s;
    if (wj)
        l1_norm_share(t, wj, l1_coef, j0, j1);
    return SAE_OK;
}

/* r = x_hat + b_dec - x per row (x_hat in G), ||r_b||^2 into row_sums[4b]. */
static void residuals(sae_trainer *t, int64_t n, const float *x, int64_t ldx)
{
    const int64_t d = t->cfg.d_in;
    const int T = t->cfg.threads;
    float *G = t->ws.G;
#pragma omp parallel for schedule(dynamic, 64) num_threads(T) if (T > 1 && n > 64)
    for (int64_t b = 0; b < n; b++) {
        for (int64_t i = 0; i < d; i++)
            G[b * d + i] += t->p.b_dec[i] - x[b * ldx + i];
        t->ws.row_sums[b * 4] = sae__sumsq(G + b * d, d);
    }
}

/* Both backward paths: gradients into t->gp (but db_dec), row_sums[4b] = ||r_b||^2, and the
 * reconstruction term into *mse. tv: total variance of x. */
static sae_status dense_backward(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                 const float *wj, double l1_coef, double tv, double *mse)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    const int T = c->threads;
    sae_status s = sae__sgemm_tiles(false, false, n, d, F, 1.0f, w->pre, F, t->p.W_dec, d, 0.0f,
                                    w->G, d, DECODE_TILE, 0, T, NULL, NULL);
    if (s != SAE_OK)
        return s;
    residuals(t, n, x, ldx);
    *mse = sae__mse_terms(c, n, x, ldx, w->row_sums, 4, tv, w->row_factor);
#pragma omp parallel for schedule(dynamic, 64) num_threads(T) if (T > 1 && n > 64)
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < d; i++)
            w->G[b * d + i] *= w->row_factor[b];

    const int64_t tile = F < BACKWARD_TILE ? F : BACKWARD_TILE, tiles = (F + tile - 1) / tile;
    sae_status failed = SAE_OK;
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1 && tiles > 1)
    for (int64_t i = 0; i < tiles; i++) {
        float *P = w->gpre + (int64_t)omp_get_thread_num() * n * tile;
        const int64_t j0 = i * tile, j1 = F - j0 < tile ? F : j0 + tile;
        const sae_status st = backward_tile(t, n, wj, l1_coef, j0, j1, P);
        if (st != SAE_OK) {
#pragma omp atomic write
            failed = st;
        }
    }
    return failed;
}

/* Sparse forward of row b: the positive codes as a list at row_ptr[b], decode, residual into
 * G[b], raw q_bj = r_b . d_j into sel_g. */
static void sparse_row(sae_trainer *t, int64_t b, const float *xb)
{
    sae__workspace *w = &t->ws;
    const int64_t F = t->cfg.F, d = t->cfg.d_in, e0 = w->row_ptr[b];
    const float *fb = w->pre + b * F;
    int32_t *idx = w->sel_idx + e0;
    float *u = w->sel_u + e0, *q = w->sel_g + e0;
    int64_t m = 0;
    for (int64_t j = 0; j < F; j++)
        if (fb[j] > 0.0f)
            idx[m] = (int32_t)j, u[m] = fb[j], q[m++] = 0.0f;
    float *r = w->G + b * d;
    memcpy(r, t->p.b_dec, sizeof(float) * (size_t)d);
    w->row_sums[b * 4] = sae__decode_dots(m, idx, u, u, t->p.W_dec, d, d, NULL, xb, r, q);
}

static void sparse_backward(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                            const float *wj, double l1_coef, double tv, double *mse)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    const int T = c->threads;
    w->row_ptr[0] = 0;
    for (int64_t b = 0; b < n; b++)
        w->row_ptr[b + 1] = w->row_ptr[b] + (int64_t)w->row_sums[b * 4 + 1];
#pragma omp parallel for schedule(dynamic, 16) num_threads(T) if (T > 1 && n > 16)
    for (int64_t b = 0; b < n; b++)
        sparse_row(t, b, x + b * ldx);
    *mse = sae__mse_terms(c, n, x, ldx, w->row_sums, 4, tv, w->row_factor);
#pragma omp parallel for schedule(dynamic, 64) num_threads(T) if (T > 1 && n > 64)
    for (int64_t b = 0; b < n; b++) {
        const float a_b = w->row_factor[b], l1_row = (float)(l1_coef * w->row_weight[b]);
        for (int64_t i = 0; i < d; i++)
            w->G[b * d + i] *= a_b;
        for (int64_t e = w->row_ptr[b]; e < w->row_ptr[b + 1]; e++)
            w->sel_g[e] = a_b * w->sel_g[e] + l1_row * (wj ? wj[w->sel_idx[e]] : 1.0f);
    }
    sae__csc_build(w, F, n, 0, w->row_ptr, 0);
    sae__csc_accumulate(t, n);
    if (wj) {
#pragma omp parallel for schedule(dynamic, 256) num_threads(T) if (T > 1 && F > 256)
        for (int64_t j = 0; j < F; j++)
            l1_norm_share(t, wj, l1_coef, j, j + 1);
    }
}

/* rho_b of the L1 variant. */
static double l1_row_weight(const sae__train_cfg *c, int64_t n, const float *xb)
{
    if (c->l1 != SAE_L1_NORMALIZED)
        return 1.0 / (double)n;
    return 1.0 / ((double)n * sqrt(sae__sumsq(xb, c->d_in)));
}

sae_status sae__standard_loss_grad(sae_trainer *t, int64_t n, const float *x, int64_t ldx,
                                   double l1_coef, sae__loss_terms *out)
{
    const sae__train_cfg *c = &t->cfg;
    sae__workspace *w = &t->ws;
    const int64_t F = c->F, d = c->d_in;
    for (int64_t b = 0; b < n; b++)
        w->row_weight[b] = l1_row_weight(c, n, x + b * ldx);
    const int64_t tiles = encode_tiles(F);
    std_ctx ctx = {t, c->l1 == SAE_L1_DECODER_NORM ? w->dec_norm : NULL,
                   (double *)(w->gpre + tile_floats(c, n)), tiles};
    sae_status s = sae__encode_dense(t, n, x, ldx, codes_tile, &ctx);
    if (s != SAE_OK)
        return s;
    double l1 = 0, positive = 0;
    for (int64_t b = 0; b < n; b++) {
        double row_l1 = 0, row_pos = 0;
        for (int64_t i = 0; i < tiles; i++)
            row_l1 += ctx.part[(b * tiles + i) * 2], row_pos += ctx.part[(b * tiles + i) * 2 + 1];
        w->row_sums[b * 4 + 1] = row_pos;
        l1 += w->row_weight[b] * row_l1, positive += row_pos;
    }
    const int64_t n_dead = sae__dead_update(c, t->since_fired, w->fired, n, w->counts_next,
                                            w->dead, w->dead_list);

    /* Sparse when the mean L0 is at most SAE__RELU_SPARSE_WIDTH(F), what the lists can hold. */
    const double tv = sae__total_variance(n, d, x, ldx);
    double mse = 0;
    const bool sparse = w->relu_force != 1 && positive <= (double)(n * SAE__RELU_SPARSE_WIDTH(F));
    w->relu_taken = sparse ? 2 : 1;
    if (sparse)
        sparse_backward(t, n, x, ldx, ctx.wj, l1_coef, tv, &mse);
    else if ((s = dense_backward(t, n, x, ldx, ctx.wj, l1_coef, tv, &mse)) != SAE_OK)
        return s;
    sae__b_dec_grad(t, n, w->G);

    double sq = 0;
    for (int64_t b = 0; b < n; b++)
        sq += w->row_sums[b * 4];
    *out = (sae__loss_terms){
        .loss = mse + l1_coef * l1, .mse = mse, .l1 = l1, .l1_coef = l1_coef,
        .fvu = tv > 0 ? sq / tv : NAN, .l0 = positive / (double)n, .n_dead = n_dead,
        .row_min_mean = -1.0,
    };
    return SAE_OK;
}
