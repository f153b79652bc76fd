/* Fused CPU kernel of the Jeffreys loss: per-row statistics and the analytic gradient.
 *
 * Built on first use by jeffreys/losses/_native.py (cc -O3 -march=native, loaded with
 * ctypes: no Python or torch headers). The maths is that of _fused.py, rewritten so that
 * every quantity comes from the non-target log-sum-exp, which makes it exact for any gap:
 *
 *   m = max_{i!=k} z_i,  S = sum_{i!=k} e^{z_i-m} (>= 1),  T = sum_{i!=k} e^{z_i-m}(z_i-m)
 *   lse_nt = m + log S,  q_i = e^{z_i - lse_nt},  E = sum_{i!=k} q_i z_i = m + T/S
 *   ce = softplus(lse_nt - z_k)          (= -log p_k)
 *   log s = -softplus(z_k - lse_nt)      (s = 1 - p_k)
 *   ls = ce + z_k - (sum_i z_i - z_k)/M, j = E - L = E - z_k - ce,  M = K - 1
 *
 * and the gradient of w ce + alpha ls + beta j (times the row's upstream gradient g):
 *
 *   dz_i = g [q_i (A + beta (z_i - m)) - alpha/M]   (i != k),  A = (w+alpha-beta) s + beta (1 - T/S)
 *   dz_k = g [(w+alpha-beta) p_k - w]
 *
 * Cost: the gradient (for an upstream gradient of `scale`) is formed during the forward,
 * row by row while the row is in cache (see rows_f): one exponential per logit, one (B, K)
 * allocation (the gradient); the caller's backward only rescales it when the upstream
 * gradient is not 1. Rows are split over threads. Sums run in float SIMD lanes over blocks of BLOCK elements, the
 * block sums in double. A row holding a non-finite logit is reported, not computed: the
 * caller then uses the eager path, which defines those cases.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 1024
#define MAX_THREADS 256
/* Per-row statistics written by the forward (doubles). */
enum { ST_CE, ST_LS, ST_J, ST_LOSS, ST_M, ST_LSE_NT, ST_EBAR, ST_LOG_S, NSTAT };

int jeffreys_kernel_nstat(void) { return NSTAT; }

int jeffreys_kernel_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* e^x for x <= 88 within 1 ulp (Cephes' expf polynomial; measured against double exp on
 * every 64th float of [-87, 88]); 0 below -87 (true value < 1.7e-38: no subnormals).
 * Branch-free, so the loops calling it vectorise. */
static inline float exp_f(float x) {
    float lo = x < -87.0f ? 1.0f : 0.0f;
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return lo != 0.0f ? 0.0f : p * scale;
}

static inline double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* ---------------------------------------------------------------- float32 */

/* max and sum of z[0..n) */
static void max_sum_f(const float *restrict z, int64_t n, float *m_io, double *sum_io) {
    float m = *m_io;
    double total = *sum_io;
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t end = start + BLOCK < n ? start + BLOCK : n;
        float s = 0.0f;
#pragma omp simd reduction(max : m) reduction(+ : s)
        for (int64_t i = start; i < end; i++) {
            m = z[i] > m ? z[i] : m;
            s += z[i];
        }
        total += s;
    }
    *m_io = m;
    *sum_io = total;
}

/* S += sum e_i, T += sum e_i (z_i - m) over z[0..n), e_i = e^{z_i - m}; e_i stored in
 * e[0..n) unless e is NULL. */
static void exp_sums_f(const float *restrict z, float *restrict e, int64_t n, float m, int with_t, double *s_io,
                       double *t_io) {
    double big_s = *s_io, big_t = *t_io;
    for (int64_t start = 0; start < n; start += BLOCK) {
        int64_t end = start + BLOCK < n ? start + BLOCK : n;
        float s = 0.0f, t = 0.0f;
        if (e && with_t) {
#pragma omp simd reduction(+ : s, t)
            for (int64_t i = start; i < end; i++) {
                float d = z[i] - m, v = exp_f(d);
                e[i] = v;
                s += v;
                t += v * d;
            }
        } else if (e) {
#pragma omp simd reduction(+ : s)
            for (int64_t i = start; i < end; i++) {
                float v = exp_f(z[i] - m);
                e[i] = v;
                s += v;
            }
        } else if (with_t) {
#pragma omp simd reduction(+ : s, t)
            for (int64_t i = start; i < end; i++) {
                float d = z[i] - m, v = exp_f(d);
                s += v;
                t += v * d;
            }
        } else {
#pragma omp simd reduction(+ : s)
            for (int64_t i = start; i < end; i++) s += exp_f(z[i] - m);
        }
        big_s += s;
        big_t += t;
    }
    *s_io = big_s;
    *t_io = big_t;
}

/* The scalar part shared by both precisions: statistics of a row from its sums. */
static void row_stats(double *st, double z_k, double m, double s, double t, double z_sum, int64_t k_classes,
                      double w, double alpha, double beta) {
    double lse_nt = m + log(s);
    double ce = softplus(lse_nt - z_k);
    double ls = ce + z_k - (z_sum - z_k) / (double)(k_classes - 1);
    double ebar = t / s;
    double j = m + ebar - z_k - ce;
    st[ST_CE] = ce;
    st[ST_LS] = ls;
    st[ST_J] = j;
    st[ST_LOSS] = w * ce + (alpha != 0.0 ? alpha * ls : 0.0) + (beta != 0.0 ? beta * j : 0.0);
    st[ST_M] = m;
    st[ST_LSE_NT] = lse_nt;
    st[ST_EBAR] = ebar;
    st[ST_LOG_S] = -softplus(z_k - lse_nt);
}

/* Gradient coefficients of a row, the loss scaled by `scale`: dz_i = e_i (a + b (z_i - m)) - c
 * for i != k with e_i = e^{z_i - m} (so a and b carry the 1/S of q_i), and dz_k. */
typedef struct {
    double a, b, c, g_k;
} Coef;

static Coef row_coef(const double *st, double s, int64_t k_classes, double w, double alpha, double beta,
                     double scale) {
    double c1 = w + alpha - beta;
    double mass = exp(st[ST_LOG_S]); /* 1 - p_k */
    Coef co;
    co.a = scale * (c1 * mass + beta * (1.0 - st[ST_EBAR])) / s;
    co.b = scale * beta / s;
    co.c = scale * alpha / (double)(k_classes - 1);
    co.g_k = scale * (c1 * exp(-st[ST_CE]) - w);
    return co;
}

typedef struct {
    const void *z;
    const int64_t *labels;
    double *stats;
    void *grad; /* NULL: no gradient wanted */
    int64_t row0, row1, classes;
    double w, alpha, beta, scale;
    int bad; /* rows with a non-finite logit */
} Job;

/* Per row, with the row in cache throughout: (1) max and sum of z; (2) e_i = e^{z_i-m}
 * and its sums, e_i stored in the gradient's row when one is wanted; (3) that row turned
 * into the gradient in place. One exponential per logit, forward and backward together. */
static void rows_f(Job *job) {
    const float *zall = (const float *)job->z;
    float *gall = (float *)job->grad;
    int64_t K = job->classes;
    int with_t = job->beta != 0.0;
    for (int64_t r = job->row0; r < job->row1; r++) {
        const float *restrict z = zall + r * K;
        int64_t k = job->labels[r];
        double *st = job->stats + r * NSTAT;
        float m = -INFINITY;
        double z_sum = 0.0, s = 0.0, t = 0.0;
        max_sum_f(z, k, &m, &z_sum);
        max_sum_f(z + k + 1, K - k - 1, &m, &z_sum);
        if (!isfinite(z_sum + z[k])) { /* an inf or NaN in the row */
            job->bad++;
            for (int c = 0; c < NSTAT; c++) st[c] = NAN;
            continue;
        }
        float *restrict g = gall ? gall + r * K : NULL;
        exp_sums_f(z, g, k, m, with_t, &s, &t);
        exp_sums_f(z + k + 1, g ? g + k + 1 : NULL, K - k - 1, m, with_t, &s, &t);
        row_stats(st, z[k], m, s, t, z_sum + z[k], K, job->w, job->alpha, job->beta);
        if (!g) continue;
        Coef co = row_coef(st, s, K, job->w, job->alpha, job->beta, job->scale);
        float a = (float)co.a, b = (float)co.b, c = (float)co.c;
        g[k] = 0.0f;
        if (b != 0.0f) {
#pragma omp simd
            for (int64_t i = 0; i < K; i++) g[i] = g[i] * (a + b * (z[i] - m)) - c;
        } else {
#pragma omp simd
            for (int64_t i = 0; i < K; i++) g[i] = g[i] * a - c;
        }
        g[k] = (float)co.g_k;
    }
}

/* float64 (gradcheck, float64 training): the same steps with libm's exp, unvectorised. */
static void rows_d(Job *job) {
    const double *zall = (const double *)job->z;
    double *gall = (double *)job->grad;
    int64_t K = job->classes;
    for (int64_t r = job->row0; r < job->row1; r++) {
        const double *z = zall + r * K;
        int64_t k = job->labels[r];
        double *st = job->stats + r * NSTAT;
        double m = -INFINITY, z_sum = 0.0, s = 0.0, t = 0.0;
        for (int64_t i = 0; i < K; i++) {
            z_sum += z[i];
            if (i != k && z[i] > m) m = z[i];
        }
        if (!isfinite(z_sum)) {
            job->bad++;
            for (int c = 0; c < NSTAT; c++) st[c] = NAN;
            continue;
        }
        for (int64_t i = 0; i < K; i++) {
            if (i == k) continue;
            double d = z[i] - m, e = exp(d);
            s += e;
            t += e * d;
        }
        row_stats(st, z[k], m, s, t, z_sum, K, job->w, job->alpha, job->beta);
        if (!gall) continue;
        double *g = gall + r * K;
        Coef co = row_coef(st, s, K, job->w, job->alpha, job->beta, job->scale);
        for (int64_t i = 0; i < K; i++) g[i] = exp(z[i] - m) * (co.a + co.b * (z[i] - m)) - co.c;
        g[k] = co.g_k;
    }
}

/* ---------------------------------------------------------------- threads and entry points */

typedef void (*RowFn)(Job *);

static int clamp_threads(int threads, int64_t rows) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > rows) threads = (int)rows;
    return threads < 1 ? 1 : threads;
}

#ifdef _OPENMP
#include <omp.h>
/* Run fn over rows [0, rows) split into `threads` contiguous parts on OpenMP's team. Built
 * with -fopenmp this library binds to the libgomp torch has loaded (same soname), so the
 * parts run on torch's own intra-op threads: no second pool competing with its spinning
 * workers. Returns the summed `bad` count. */
static int run_rows(RowFn fn, const Job *proto, int64_t rows, int threads) {
    threads = clamp_threads(threads, rows);
    int bad = 0;
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(+ : bad)
    {
        int i = omp_get_thread_num(), n = omp_get_num_threads();
        Job job = *proto;
        job.row0 = rows * i / n;
        job.row1 = rows * (i + 1) / n;
        job.bad = 0;
        fn(&job);
        bad += job.bad;
    }
    return bad;
}
#else
typedef struct {
    Job job;
    RowFn fn;
} Task;

static void *run_task(void *arg) {
    Task *task = (Task *)arg;
    task->fn(&task->job);
    return NULL;
}

/* Without OpenMP: the same split over threads started for the call (the calling thread
 * takes the first part). */
static int run_rows(RowFn fn, const Job *proto, int64_t rows, int threads) {
    threads = clamp_threads(threads, rows);
    Task tasks[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        tasks[i].job = *proto;
        tasks[i].job.row0 = rows * i / threads;
        tasks[i].job.row1 = rows * (i + 1) / threads;
        tasks[i].job.bad = 0;
        tasks[i].fn = fn;
        started[i] = 0;
    }
    for (int i = 1; i < threads; i++) started[i] = pthread_create(&ids[i], NULL, run_task, &tasks[i]) == 0;
    run_task(&tasks[0]);
    int bad = tasks[0].job.bad;
    for (int i = 1; i < threads; i++) {
        if (started[i])
            pthread_join(ids[i], NULL);
        else
            run_task(&tasks[i]); /* no thread to be had: do the part here */
        bad += tasks[i].job.bad;
    }
    return bad;
}
#endif

/* Labels must be in [0, classes); returns -1 (nothing computed) otherwise. */
static int labels_ok(const int64_t *labels, int64_t rows, int64_t classes) {
    for (int64_t r = 0; r < rows; r++)
        if (labels[r] < 0 || labels[r] >= classes) return 0;
    return 1;
}

/* Statistics (rows x NSTAT doubles) of z (rows x classes, C-contiguous, float32 if
 * dtype_bytes == 4 else float64) and, unless grad is NULL, the gradient (same shape and
 * dtype) of `scale` times the summed row losses. Returns the number of rows holding a
 * non-finite logit (their stats are NaN, their gradient rows undefined), or -1 for bad
 * arguments (nothing computed). */
int jeffreys_forward(const void *z, int dtype_bytes, const int64_t *labels, int64_t rows, int64_t classes,
                     double w, double alpha, double beta, double scale, double *stats, void *grad, int threads) {
    if (classes < 2 || rows < 0 || (dtype_bytes != 4 && dtype_bytes != 8) || !labels_ok(labels, rows, classes))
        return -1;
    Job job = {z, labels, stats, grad, 0, 0, classes, w, alpha, beta, scale, 0};
    return run_rows(dtype_bytes == 4 ? rows_f : rows_d, &job, rows, threads);
}
