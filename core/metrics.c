/*
 * metrics.c: see metrics.h.
 *
 * A labelled family is a fixed array of series. A series is looked up by
 * its rendered label string without a lock (entries below `n` are written
 * once, before `n` is raised with release order, and never change); a new
 * label set takes the family's mutex, looks again and appends. The last
 * slot is the overflow series ("_other" labels) for label sets past
 * METRICS_MAX_SERIES. Histogram buckets are counted per bucket (not
 * cumulative) and summed at scrape, so a scrape always shows monotonic
 * buckets and a _count equal to the +Inf bucket, even while workers observe.
 */
#include "metrics.h"
#include "keypool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static atomic_long counters[M_COUNT];

static const struct {
	const char *name;
	const char *help;
} info[M_COUNT] = {
	[M_HTTP_REQUESTS] = { "genrelay_http_requests_total", "API requests answered" },
	[M_JOBS_ACCEPTED] = { "genrelay_jobs_accepted_total", "Jobs committed and answered 202" },
	[M_JOBS_SUCCEEDED] = { "genrelay_jobs_succeeded_total", "Jobs that ended succeeded" },
	[M_JOBS_FAILED] = { "genrelay_jobs_failed_total", "Jobs that ended failed" },
	[M_JOBS_CANCELED] = { "genrelay_jobs_canceled_total", "Jobs canceled" },
	[M_SUBMITS] = { "genrelay_provider_submits_total", "Submit requests sent to providers" },
	[M_SUBMIT_RETRIES] = { "genrelay_provider_submit_retries_total", "Submits retried after a temporary failure" },
	[M_FAILOVERS] = { "genrelay_failovers_total", "Jobs moved to their next target" },
	[M_POLLS] = { "genrelay_provider_polls_total", "Poll requests sent to providers" },
	[M_CALLBACKS] = { "genrelay_callbacks_total", "Provider callbacks received" },
	[M_CALLBACKS_REJECTED] = { "genrelay_callbacks_rejected_total", "Callbacks refused (token or signature)" },
	[M_CALLBACKS_DUPLICATE] = { "genrelay_callbacks_duplicate_total", "Callbacks for jobs already terminal" },
	[M_DELIVERY_ATTEMPTS] = { "genrelay_delivery_attempts_total", "Webhook delivery attempts" },
	[M_DELIVERIES_OK] = { "genrelay_deliveries_succeeded_total", "Webhooks answered 2xx" },
	[M_DELIVERIES_FAILED] = { "genrelay_delivery_attempts_failed_total", "Webhook attempts that failed" },
	[M_DELIVERIES_DEAD] = { "genrelay_deliveries_dead_total", "Webhooks dead after the last try" },
	[M_SCRIPT_ERRORS] = { "genrelay_script_errors_total", "Script calls that raised or broke a limit" },
	[M_STORE_ERRORS] = { "genrelay_store_errors_total", "Store operations that failed" },
	[M_STORE_ROUND_TRIPS] = { "genrelay_store_round_trips_total",
				  "Round trips to the store's server a worker waited for (PostgreSQL)" },
	[M_STORE_WAKEUPS] = { "genrelay_store_wakeups_total",
			      "Workers woken by another's announcement of new due work (PostgreSQL LISTEN/NOTIFY)" },
};

void metrics_inc(enum metric m)
{
	atomic_fetch_add_explicit(&counters[m], 1, memory_order_relaxed);
}

void metrics_add(enum metric m, long n)
{
	atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

static atomic_long loop_max_us;

void metrics_loop_iteration(long us)
{
	long cur = atomic_load_explicit(&loop_max_us, memory_order_relaxed);
	while (us > cur && !atomic_compare_exchange_weak_explicit(&loop_max_us, &cur, us,
								  memory_order_relaxed,
								  memory_order_relaxed))
		;
}

/* ------------------------------------------------------ labelled families */

#define NB_MAX 20
#define LABELS_MAX 3
#define LABELS_LEN (LABELS_MAX * (METRICS_LABEL_MAX * 2 + 24))

/* Upper bounds in seconds. */
static const double slow_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
				      30, 60, 120, 300, 600, 1800, 3600 };
static const double fast_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
				      0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };
#define NSLOW (int)(sizeof slow_bounds / sizeof slow_bounds[0])
#define NFAST (int)(sizeof fast_bounds / sizeof fast_bounds[0])

struct series {
	char labels[LABELS_LEN]; /* rendered: a="x",b="y" */
	atomic_long value;       /* counter value */
	atomic_long bucket[NB_MAX + 1]; /* histogram: per bucket, last is +Inf */
	atomic_long sum_us;
};

struct family {
	const char *name, *help;
	const double *bounds; /* NULL: a counter */
	int nbounds;
	int nlabels;
	const char *label[LABELS_MAX];
	pthread_mutex_t mu;
	atomic_int n;        /* series in use below METRICS_MAX_SERIES */
	atomic_int overflow; /* 1 once the overflow series was used */
	struct series s[METRICS_MAX_SERIES + 1];
};

#define FAMILY(nm, hp, b, nb, nl, ...)                                          \
	{ .name = nm, .help = hp, .bounds = b, .nbounds = nb, .nlabels = nl,    \
	  .label = { __VA_ARGS__ }, .mu = PTHREAD_MUTEX_INITIALIZER }

enum {
	F_JOBS,
	F_PROVIDER_CALLS,
	F_WEBHOOK_ATTEMPTS,
	F_CALLBACKS,
	F_SCRIPT_CALLS,
	F_SCRIPT_FAILURES,
	F_SUBMIT_SECONDS,
	F_RESULT_TO_WEBHOOK,
	F_DELIVERY_SECONDS,
	F_JOB_SECONDS,
	F_COMMIT_SECONDS,
	F_COUNT
};

static struct family fam[F_COUNT] = {
	[F_JOBS] = FAMILY("genrelay_jobs_total",
			  "Jobs that reached a state (accepted, succeeded, failed, canceled)", NULL, 0,
			  3, "provider", "alias", "state"),
	[F_PROVIDER_CALLS] = FAMILY("genrelay_provider_calls_total",
				    "Provider requests by step and outcome (ok, http_4xx, http_5xx, http_other, error)",
				    NULL, 0, 3, "provider", "step", "outcome"),
	[F_WEBHOOK_ATTEMPTS] = FAMILY("genrelay_webhook_attempts_total",
				      "Webhook attempts by outcome (delivered, failed) and status class (2xx, 4xx, 5xx, other, error)",
				      NULL, 0, 2, "outcome", "status_class"),
	[F_CALLBACKS] = FAMILY("genrelay_provider_callbacks_total",
			       "Provider callbacks by verdict (applied, duplicate, ignored, rejected)",
			       NULL, 0, 2, "provider", "verdict"),
	[F_SCRIPT_CALLS] = FAMILY("genrelay_script_calls_total", "Calls into each script", NULL, 0, 1,
				  "script"),
	[F_SCRIPT_FAILURES] = FAMILY("genrelay_script_call_errors_total",
				     "Calls into each script that raised or broke a limit", NULL, 0, 1,
				     "script"),
	[F_SUBMIT_SECONDS] = FAMILY("genrelay_provider_submit_duration_seconds",
				    "Duration of submit requests to providers", slow_bounds, NSLOW, 1,
				    "provider"),
	[F_RESULT_TO_WEBHOOK] = FAMILY("genrelay_callback_to_webhook_seconds",
				       "From a job's result (callback or poll) to its webhook answered 2xx",
				       slow_bounds, NSLOW, 0, NULL),
	[F_DELIVERY_SECONDS] = FAMILY("genrelay_delivery_duration_seconds",
				      "Duration of webhook delivery attempts", slow_bounds, NSLOW, 0, NULL),
	[F_JOB_SECONDS] = FAMILY("genrelay_job_duration_seconds",
				 "From a job's creation to its end, by provider and final state",
				 slow_bounds, NSLOW, 2, "provider", "state"),
	[F_COMMIT_SECONDS] = FAMILY("genrelay_store_commit_duration_seconds",
				    "Duration of store commits", fast_bounds, NFAST, 0, NULL),
};

static atomic_long reloads;

/* Appends name="value" (escaped, cut at METRICS_LABEL_MAX) to out. */
static size_t put_label(char *out, size_t len, size_t cap, const char *name, const char *v)
{
	if (!v || !*v)
		v = "none";
	int r = snprintf(out + len, cap - len, "%s%s=\"", len ? "," : "", name);
	if (r < 0 || (size_t)r >= cap - len)
		return len;
	len += (size_t)r;
	for (size_t i = 0; v[i] && i < METRICS_LABEL_MAX && len + 3 < cap; i++) {
		char c = v[i];
		if (c == '\\' || c == '"' || c == '\n') {
			out[len++] = '\\';
			c = c == '\n' ? 'n' : c;
		}
		out[len++] = c;
	}
	if (len + 1 < cap)
		out[len++] = '"';
	out[len] = '\0';
	return len;
}

/* The series of f for values v[0..f->nlabels); never NULL. */
static struct series *series_of(struct family *f, const char *const *v)
{
	char key[LABELS_LEN];
	size_t len = 0;
	key[0] = '\0';
	for (int i = 0; i < f->nlabels; i++)
		len = put_label(key, len, sizeof key, f->label[i], v[i]);
	int n = atomic_load_explicit(&f->n, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (strcmp(f->s[i].labels, key) == 0)
			return &f->s[i];
	struct series *s = NULL;
	pthread_mutex_lock(&f->mu);
	n = atomic_load_explicit(&f->n, memory_order_relaxed);
	for (int i = 0; i < n && !s; i++)
		if (strcmp(f->s[i].labels, key) == 0)
			s = &f->s[i];
	if (!s && n < METRICS_MAX_SERIES) {
		s = &f->s[n];
		memcpy(s->labels, key, len + 1);
		atomic_store_explicit(&f->n, n + 1, memory_order_release);
	}
	pthread_mutex_unlock(&f->mu);
	if (!s) {
		s = &f->s[METRICS_MAX_SERIES];
		atomic_store_explicit(&f->overflow, 1, memory_order_relaxed);
	}
	return s;
}

static void count(int fi, const char *a, const char *b, const char *c)
{
	const char *v[LABELS_MAX] = { a, b, c };
	atomic_fetch_add_explicit(&series_of(&fam[fi], v)->value, 1, memory_order_relaxed);
}

static void observe(int fi, const char *a, const char *b, double secs)
{
	const char *v[LABELS_MAX] = { a, b, NULL };
	struct family *f = &fam[fi];
	struct series *s = series_of(f, v);
	if (!(secs >= 0)) /* also NaN */
		secs = 0;
	int i = 0;
	while (i < f->nbounds && secs > f->bounds[i])
		i++;
	atomic_fetch_add_explicit(&s->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->sum_us, (long)(secs * 1e6), memory_order_relaxed);
}

void metrics_job(const char *provider, const char *alias, const char *state, double secs)
{
	count(F_JOBS, provider, alias, state);
	if (secs >= 0 && strcmp(state, "accepted") != 0)
		observe(F_JOB_SECONDS, provider, state, secs);
}

static const char *status_class(long status, char *buf, size_t len)
{
	if (status >= 200 && status < 600 && status / 100 != 3) {
		snprintf(buf, len, "%ldxx", status / 100);
		return buf;
	}
	return "other";
}

void metrics_provider_call(const char *provider, const char *step, int error, long status,
			   double ms)
{
	char cls[16], out[24];
	const char *outcome = "error";
	if (!error) {
		status_class(status, cls, sizeof cls);
		if (status >= 200 && status < 300)
			outcome = "ok";
		else if (status >= 400 && status < 600)
			outcome = snprintf(out, sizeof out, "http_%s", cls) > 0 ? out : "http_other";
		else
			outcome = "http_other";
	}
	count(F_PROVIDER_CALLS, provider, step, outcome);
	if (strcmp(step, "submit") == 0)
		observe(F_SUBMIT_SECONDS, provider, NULL, ms / 1000.0);
}

void metrics_delivery(int error, long status, double ms)
{
	char cls[16];
	int ok = !error && status >= 200 && status < 300;
	count(F_WEBHOOK_ATTEMPTS, ok ? "delivered" : "failed",
	      error ? "error" : status_class(status, cls, sizeof cls), NULL);
	observe(F_DELIVERY_SECONDS, NULL, NULL, ms / 1000.0);
}

void metrics_result_to_webhook(double secs)
{
	observe(F_RESULT_TO_WEBHOOK, NULL, NULL, secs);
}

void metrics_callback(const char *provider, const char *verdict)
{
	count(F_CALLBACKS, provider ? provider : "unknown", verdict, NULL);
}

void metrics_script_call(const char *script, int failed)
{
	count(F_SCRIPT_CALLS, script, NULL, NULL);
	if (failed)
		count(F_SCRIPT_FAILURES, script, NULL, NULL);
}

void metrics_reloads(long n)
{
	atomic_fetch_add_explicit(&reloads, n, memory_order_relaxed);
}

void metrics_store_commit(double secs)
{
	observe(F_COMMIT_SECONDS, NULL, NULL, secs);
}

static atomic_long config_reloads[2]; /* refused, applied */
static atomic_llong config_success_ms;
static atomic_int config_last_ok = 1;
static atomic_long config_gens = 1;

void metrics_config_reload(int reload, int applied, double wall_s)
{
	if (reload)
		atomic_fetch_add_explicit(&config_reloads[applied ? 1 : 0], 1, memory_order_relaxed);
	if (applied)
		atomic_store_explicit(&config_success_ms, (long long)(wall_s * 1000), memory_order_relaxed);
	atomic_store_explicit(&config_last_ok, applied ? 1 : 0, memory_order_relaxed);
}

void metrics_config_generations(long n)
{
	atomic_store_explicit(&config_gens, n, memory_order_relaxed);
}

/* ----------------------------------------------------------------- render */

static void render_series(struct buf *b, const struct family *f, const struct series *s,
			  const char *labels)
{
	const char *sep = *labels ? "," : "";
	if (!f->bounds) {
		buf_printf(b, "%s%s%s%s %ld\n", f->name, *labels ? "{" : "", labels,
			   *labels ? "}" : "",
			   atomic_load_explicit(&s->value, memory_order_relaxed));
		return;
	}
	long cum = 0;
	for (int i = 0; i <= f->nbounds; i++) {
		cum += atomic_load_explicit(&s->bucket[i], memory_order_relaxed);
		if (i < f->nbounds)
			buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %ld\n", f->name, labels, sep,
				   f->bounds[i], cum);
		else
			buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %ld\n", f->name, labels, sep, cum);
	}
	const char *o = *labels ? "{" : "", *c = *labels ? "}" : "";
	buf_printf(b, "%s_sum%s%s%s %.6f\n", f->name, o, labels, c,
		   (double)atomic_load_explicit(&s->sum_us, memory_order_relaxed) / 1e6);
	buf_printf(b, "%s_count%s%s%s %ld\n", f->name, o, labels, c, cum);
}

static void render_family(struct buf *b, const struct family *f)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
		   f->bounds ? "histogram" : "counter");
	if (f->nlabels == 0) { /* one series, always shown */
		render_series(b, f, &f->s[0], "");
		return;
	}
	int n = atomic_load_explicit(&f->n, memory_order_acquire);
	for (int i = 0; i < n; i++)
		render_series(b, f, &f->s[i], f->s[i].labels);
	if (atomic_load_explicit(&f->overflow, memory_order_relaxed)) {
		char key[LABELS_LEN];
		size_t len = 0;
		key[0] = '\0';
		for (int i = 0; i < f->nlabels; i++)
			len = put_label(key, len, sizeof key, f->label[i], "_other");
		render_series(b, f, &f->s[METRICS_MAX_SERIES], key);
	}
}

static void gauge(struct buf *b, const char *name, const char *help, double v)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void render_config(struct buf *b)
{
	buf_printf(b, "# HELP genrelay_config_reloads_total Configuration reloads (SIGHUP, genrelay reload) "
		      "by result: applied, or refused (the configuration in use stayed)\n"
		      "# TYPE genrelay_config_reloads_total counter\n"
		      "genrelay_config_reloads_total{result=\"applied\"} %ld\n"
		      "genrelay_config_reloads_total{result=\"refused\"} %ld\n",
		   atomic_load_explicit(&config_reloads[1], memory_order_relaxed),
		   atomic_load_explicit(&config_reloads[0], memory_order_relaxed));
	gauge(b, "genrelay_config_last_reload_successful",
	      "1 when the last configuration reload (or the start) was applied, 0 when it was refused",
	      (double)atomic_load_explicit(&config_last_ok, memory_order_relaxed));
	gauge(b, "genrelay_config_last_reload_success_timestamp_seconds",
	      "Unix time of the last applied configuration reload (the start until one is applied)",
	      (double)atomic_load_explicit(&config_success_ms, memory_order_relaxed) / 1000.0);
	gauge(b, "genrelay_config_generations",
	      "Configuration generations in memory (in use, the first, and older ones requests still hold)",
	      (double)atomic_load_explicit(&config_gens, memory_order_relaxed));
}

/* Providers past this many are summed as provider="_other" (3 series each). */
#define KEY_PROVIDERS_MAX (METRICS_MAX_SERIES / KEYPOOL_NSTATES)

static void render_keys(struct buf *b, const json_t *providers)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	size_t other[KEYPOOL_NSTATES] = { 0 }, n[KEYPOOL_NSTATES];
	int shown = 0, overflow = 0;
	const char *name;
	json_t *v;
	/* The family is declared even with no pool (no samples then), so that
	 * rules and dashboards find it. */
	buf_printf(b, "# HELP genrelay_provider_keys Keys of providers' key pools by state: usable, "
		      "cooling (after a 429), broken (after a 401/403, until the key changes in "
		      "the config)\n# TYPE genrelay_provider_keys gauge\n");
	json_object_foreach((json_t *)providers, name, v) {
		if (!keypool_count_states(name, v, now, n))
			continue;
		if (shown == KEY_PROVIDERS_MAX) {
			for (int s = 0; s < KEYPOOL_NSTATES; s++)
				other[s] += n[s];
			overflow = 1;
			continue;
		}
		shown++;
		char labels[METRICS_LABEL_MAX * 2 + 24];
		put_label(labels, 0, sizeof labels, "provider", name);
		for (int s = 0; s < KEYPOOL_NSTATES; s++)
			buf_printf(b, "genrelay_provider_keys{%s,state=\"%s\"} %zu\n", labels,
				   keypool_state_name((enum keypool_state)s), n[s]);
	}
	for (int s = 0; overflow && s < KEYPOOL_NSTATES; s++)
		buf_printf(b, "genrelay_provider_keys{provider=\"_other\",state=\"%s\"} %zu\n",
			   keypool_state_name((enum keypool_state)s), other[s]);
}

void metrics_render(struct buf *b, const struct metrics_gauges *g)
{
	for (int i = 0; i < M_COUNT; i++) {
		buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %ld\n", info[i].name,
			   info[i].help, info[i].name, info[i].name,
			   atomic_load_explicit(&counters[i], memory_order_relaxed));
	}
	for (int i = 0; i < F_COUNT; i++)
		render_family(b, &fam[i]);
	buf_printf(b, "# HELP genrelay_script_reloads_total Scripts reloaded after a change on disk\n"
		      "# TYPE genrelay_script_reloads_total counter\ngenrelay_script_reloads_total %ld\n",
		   atomic_load_explicit(&reloads, memory_order_relaxed));
	render_config(b);
	if (g->providers)
		render_keys(b, g->providers);
	gauge(b, "genrelay_outbound_inflight", "Outbound HTTP requests in flight on this worker",
	      (double)g->inflight_fetches);
	if (g->jobs_stored >= 0)
		gauge(b, "genrelay_jobs_stored", "Jobs in the store", (double)g->jobs_stored);
	if (g->queue_due >= 0) {
		buf_printf(b, "# HELP genrelay_queue_depth Work rows in the store: due (not leased), "
			      "leased (running), waiting (submitted jobs whose next poll is not due)\n"
			      "# TYPE genrelay_queue_depth gauge\n"
			      "genrelay_queue_depth{state=\"due\"} %ld\n"
			      "genrelay_queue_depth{state=\"leased\"} %ld\n"
			      "genrelay_queue_depth{state=\"waiting\"} %ld\n",
			   g->queue_due, g->queue_leased, g->queue_waiting);
		gauge(b, "genrelay_queue_oldest_due_age_seconds",
		      "Age of the oldest due work item not leased (0: none)", g->oldest_due_age_s);
	}
	if (g->store_bytes >= 0)
		gauge(b, "genrelay_store_size_bytes", "Size of the store (file or database)",
		      (double)g->store_bytes);
	gauge(b, "genrelay_store_max_bytes", "limits.store_max_mb in bytes (0: no cap)",
	      (double)(g->store_max_bytes > 0 ? g->store_max_bytes : 0));
	buf_printf(b, "# HELP genrelay_loop_stall_max_seconds Longest event-loop iteration since start\n"
		      "# TYPE genrelay_loop_stall_max_seconds gauge\ngenrelay_loop_stall_max_seconds %.6f\n",
		   (double)atomic_load_explicit(&loop_max_us, memory_order_relaxed) / 1e6);
}
