/*
 * test_metrics.c: the exposition (core/metrics.c): label values escaped and
 * cut, at most METRICS_MAX_SERIES series per family with the rest counted in
 * one "_other" series, histogram buckets cumulative with +Inf equal to
 * _count, and concurrent bumps from several threads all counted.
 */
#include "check.h"
#include "keypool.h"
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *render_with(const json_t *providers)
{
	struct buf b;
	buf_init(&b, 1 << 22);
	struct metrics_gauges g = { .jobs_stored = 3, .queue_due = 1, .queue_leased = 2,
				    .queue_waiting = 4, .oldest_due_age_s = 1.5,
				    .store_bytes = 4096, .store_max_bytes = 0, .providers = providers };
	metrics_render(&b, &g);
	size_t len;
	return buf_steal(&b, &len);
}

static char *render(void)
{
	return render_with(NULL);
}

/* Lines of text starting with prefix. */
static int count_lines(const char *text, const char *prefix)
{
	int n = 0;
	size_t pl = strlen(prefix);
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, pl) == 0)
			n++;
	return n;
}

static void *bump(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10000; i++)
		metrics_script_call("providers/threads.lua", i % 2);
	return NULL;
}

int main(void)
{
	/* Escaping and cutting. */
	metrics_callback("we\"ird\\name\nx", "applied");
	char longname[200];
	memset(longname, 'p', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	metrics_callback(longname, "ignored");
	char *t = render();
	CHECK(strstr(t, "genrelay_provider_callbacks_total{provider=\"we\\\"ird\\\\name\\nx\",verdict=\"applied\"} 1\n") != NULL);
	char want[300];
	snprintf(want, sizeof want, "{provider=\"%.*s\",verdict=\"ignored\"} 1\n", METRICS_LABEL_MAX, longname);
	CHECK(strstr(t, want) != NULL);
	CHECK(strstr(t, "genrelay_queue_depth{state=\"waiting\"} 4\n") != NULL);
	CHECK(strstr(t, "genrelay_store_max_bytes 0\n") != NULL);
	free(t);

	/* The cap: 100 providers give 64 series plus "_other" holding the rest. */
	for (int i = 0; i < 100; i++) {
		char name[32];
		snprintf(name, sizeof name, "prov%d", i);
		metrics_provider_call(name, "submit", 0, 200, 10);
	}
	t = render();
	CHECK(count_lines(t, "genrelay_provider_calls_total{") == METRICS_MAX_SERIES + 1);
	CHECK(strstr(t, "genrelay_provider_calls_total{provider=\"_other\",step=\"_other\",outcome=\"_other\"} 36\n") != NULL);
	/* The histogram: one series per provider too, 64 at most plus "_other". */
	CHECK(count_lines(t, "genrelay_provider_submit_duration_seconds_count{") == METRICS_MAX_SERIES + 1);
	free(t);

	/* Buckets: 0.003 s, 0.2 s and 7200 s (past the last bound). */
	metrics_delivery(0, 200, 3);
	metrics_delivery(0, 503, 200);
	metrics_delivery(1, 0, 7200000);
	t = render();
	CHECK(strstr(t, "genrelay_delivery_duration_seconds_bucket{le=\"0.005\"} 1\n") != NULL);
	CHECK(strstr(t, "genrelay_delivery_duration_seconds_bucket{le=\"0.25\"} 2\n") != NULL);
	CHECK(strstr(t, "genrelay_delivery_duration_seconds_bucket{le=\"3600\"} 2\n") != NULL);
	CHECK(strstr(t, "genrelay_delivery_duration_seconds_bucket{le=\"+Inf\"} 3\n") != NULL);
	CHECK(strstr(t, "genrelay_delivery_duration_seconds_count 3\n") != NULL);
	CHECK(strstr(t, "genrelay_webhook_attempts_total{outcome=\"failed\",status_class=\"5xx\"} 1\n") != NULL);
	CHECK(strstr(t, "genrelay_webhook_attempts_total{outcome=\"failed\",status_class=\"error\"} 1\n") != NULL);
	CHECK(strstr(t, "genrelay_webhook_attempts_total{outcome=\"delivered\",status_class=\"2xx\"} 1\n") != NULL);
	free(t);

	/* Four threads, 10,000 calls each: none lost. */
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, bump, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	t = render();
	CHECK(strstr(t, "genrelay_script_calls_total{script=\"providers/threads.lua\"} 40000\n") != NULL);
	CHECK(strstr(t, "genrelay_script_call_errors_total{script=\"providers/threads.lua\"} 20000\n") != NULL);
	free(t);

	/* Configuration reloads: both results always shown; the time of the
	 * last applied one; generations held. */
	t = render();
	CHECK(strstr(t, "genrelay_config_reloads_total{result=\"applied\"} 0\n") != NULL);
	CHECK(strstr(t, "genrelay_config_reloads_total{result=\"refused\"} 0\n") != NULL);
	CHECK(strstr(t, "genrelay_config_generations 1\n") != NULL);
	free(t);
	metrics_config_reload(0, 1, 1000.5); /* the start */
	metrics_config_reload(1, 1, 2000.25);
	metrics_config_reload(1, 0, 3000);
	metrics_config_generations(3);
	t = render();
	CHECK(strstr(t, "genrelay_config_reloads_total{result=\"applied\"} 1\n") != NULL);
	CHECK(strstr(t, "genrelay_config_reloads_total{result=\"refused\"} 1\n") != NULL);
	CHECK(strstr(t, "# TYPE genrelay_config_last_reload_success_timestamp_seconds gauge\n"
			"genrelay_config_last_reload_success_timestamp_seconds 2000.25\n") != NULL);
	CHECK(strstr(t, "genrelay_config_last_reload_successful 0\n") != NULL);
	CHECK(strstr(t, "genrelay_config_generations 3\n") != NULL);
	CHECK(strstr(t, "genrelay_provider_keys") == NULL); /* no providers given */
	free(t);

	/* Key pools: provider and state only; providers without a pool left
	 * out (the family declared all the same); past METRICS_MAX_SERIES / 3
	 * providers the rest is "_other". */
	json_t *single = json_pack("{s:{s:s}}", "krea", "key", "k");
	t = render_with(single);
	CHECK(strstr(t, "# TYPE genrelay_provider_keys gauge\n") != NULL);
	CHECK(count_lines(t, "genrelay_provider_keys{") == 0);
	free(t);
	json_decref(single);
	json_t *provs = json_pack("{s:{s:s},s:{s:[{s:s,s:s},{s:s,s:s}]}}", "krea", "key", "k",
				  "fal", "keys", "id", "one", "key", "secret-one", "id", "two", "key",
				  "secret-two");
	keypool_break("fal", json_object_get(provs, "fal"), "two");
	t = render_with(provs);
	CHECK(strstr(t, "# TYPE genrelay_provider_keys gauge\n") != NULL);
	CHECK(strstr(t, "genrelay_provider_keys{provider=\"fal\",state=\"usable\"} 1\n") != NULL);
	CHECK(strstr(t, "genrelay_provider_keys{provider=\"fal\",state=\"cooling\"} 0\n") != NULL);
	CHECK(strstr(t, "genrelay_provider_keys{provider=\"fal\",state=\"broken\"} 1\n") != NULL);
	CHECK(count_lines(t, "genrelay_provider_keys{") == 3);
	CHECK(!strstr(t, "secret-") && !strstr(t, "\"two\""));
	free(t);
	for (int i = 0; i < 30; i++) {
		char name[32];
		snprintf(name, sizeof name, "pool%02d", i);
		json_object_set_new(provs, name, json_pack("{s:[{s:s}]}", "keys", "key", name));
	}
	t = render_with(provs);
	CHECK(count_lines(t, "genrelay_provider_keys{") == METRICS_MAX_SERIES / 3 * 3 + 3);
	CHECK(strstr(t, "genrelay_provider_keys{provider=\"_other\",state=\"usable\"} 10\n") != NULL);
	free(t);
	json_decref(provs);
	keypool_reset();
	return check_done();
}
