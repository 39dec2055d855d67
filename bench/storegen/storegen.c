/*
 * storegen.c: writes many jobs straight into a genrelay SQLite store through
 * store.h, in batched transactions, for the benchmarks that need a big store
 * or a backlog of finished jobs.
 *
 *   storegen --db PATH --jobs N [--waiting M] [--customer acme]
 *            [--webhook URL] [--deliveries] [--ids FILE] [--ids-sample K]
 *
 * Every job looks like one genrelay made for a fal flux request: a ~200 byte
 * input, a track_id, a webhook_url, the fal request id and data. Ids come from
 * sign_random_id(), as genrelay's own do (time-ordered ULIDs).
 *
 *   default       N jobs: the first M "processing" with a WORK_POLL row due in
 *                 30 days (jobs waiting for callbacks), the rest "succeeded"
 *                 with one image output.
 *   --deliveries  N succeeded jobs, each with a pending delivery to --webhook
 *                 and a WORK_DELIVER row due now and not leased: genrelay
 *                 starts delivering them as soon as it starts.
 *   --ids FILE    writes K ids (default 100000, or N when smaller), chosen
 *                 uniformly at random among the N, one per line.
 *
 * Prints progress to stderr and, at the end, one JSON line to stdout:
 * {"jobs":N,"waiting":M,"deliveries":D,"seconds":S}.
 */
#include "job.h"
#include "sign.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 5000

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static const char *const prompts[] = {
	"a lighthouse on a cliff at dusk, long exposure, waves crashing below, volumetric light",
	"portrait of an old fisherman mending nets, soft window light, 85mm, shallow depth of field",
	"isometric cutaway of a tiny bakery at night, warm lights, rain on the windows, detailed",
	"a red fox in fresh snow, morning mist, telephoto, crisp detail, national geographic style",
};

static void usage(void)
{
	fprintf(stderr, "usage: storegen --db PATH --jobs N [--waiting M] [--customer NAME] "
			"[--webhook URL] [--deliveries] [--ids FILE] [--ids-sample K]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *db = NULL, *customer = "acme", *webhook = "https://hooks.example.com/genrelay",
		   *ids_path = NULL;
	long long n = -1, waiting = 0, sample = 100000;
	int deliveries = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--deliveries") == 0) {
			deliveries = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (strcmp(a, "--db") == 0)
			db = v;
		else if (strcmp(a, "--jobs") == 0)
			n = atoll(v);
		else if (strcmp(a, "--waiting") == 0)
			waiting = atoll(v);
		else if (strcmp(a, "--customer") == 0)
			customer = v;
		else if (strcmp(a, "--webhook") == 0)
			webhook = v;
		else if (strcmp(a, "--ids") == 0)
			ids_path = v;
		else if (strcmp(a, "--ids-sample") == 0)
			sample = atoll(v);
		else
			usage();
	}
	if (!db || n < 0 || waiting < 0 || waiting > n || (deliveries && waiting))
		usage();
	if (sample > n)
		sample = n;

	char spec[4096], err[512];
	snprintf(spec, sizeof spec, "sqlite:%s", db);
	struct store *s = store_open(spec, 0, err, sizeof err);
	if (!s) {
		fprintf(stderr, "storegen: %s\n", err);
		return 1;
	}
	char (*picked)[48] = sample > 0 ? calloc((size_t)sample, 48) : NULL;
	if (sample > 0 && !picked) {
		fprintf(stderr, "storegen: out of memory\n");
		return 1;
	}

	double t0 = mono_s();
	int64_t now = wall_ms();
	long long dlv = 0;
	int rc = 0;
	for (long long i = 0; i < n && rc == 0; i++) {
		if (i % BATCH == 0 && (rc = store_begin(s)) < 0)
			break;
		struct job j;
		memset(&j, 0, sizeof j);
		sign_random_id("job_", j.id, sizeof j.id);
		int done = i >= waiting;
		char input[512], track[64], rid[64], url[1024];
		snprintf(input, sizeof input,
			 "{\"prompt\":\"%s\",\"image_size\":\"landscape_4_3\",\"num_inference_steps\":28,"
			 "\"guidance_scale\":3.5,\"num_images\":1,\"seed\":%lld}",
			 prompts[i % 4], i);
		snprintf(track, sizeof track, "bench-%lld", i);
		uint64_t r1 = rnd(), r2 = rnd();
		snprintf(rid, sizeof rid, "%08x-%04x-4%03x-a%03x-%012llx", (unsigned)(r1 >> 32),
			 (unsigned)(r1 >> 16) & 0xffff, (unsigned)r1 & 0xfff, (unsigned)(r2 >> 48) & 0xfff,
			 (unsigned long long)(r2 & 0xffffffffffffull));
		snprintf(url, sizeof url, "%s", webhook);
		char output[512];
		snprintf(output, sizeof output,
			 "{\"type\":\"image\",\"items\":[{\"type\":\"image\",\"url\":"
			 "\"https://v3.fal.media/files/bench/%s.png\",\"content_type\":\"image/png\"}]}",
			 rid);
		j.customer = (char *)customer;
		j.model_id = "fal-ai/flux/dev";
		j.targets = "[\"fal:fal-ai/flux/dev\"]";
		j.provider = "fal";
		j.model = "fal-ai/flux/dev";
		j.status = done ? JOB_SUCCEEDED : JOB_PROCESSING;
		j.request_id = rid;
		j.track_id = track;
		j.input = input;
		j.webhook_url = url;
		j.hook = "default";
		j.output = done ? output : NULL;
		j.data = "{\"app\":\"fal-ai/flux\"}";
		j.created_at = now - (n - i);
		j.updated_at = j.created_at + (done ? 4000 : 50);
		j.completed_at = done ? j.created_at + 4000 : 0;
		j.submit_deadline = j.created_at + 300000;
		j.deadline = done ? j.created_at + 3600000 : now + 40LL * 86400 * 1000;
		if ((rc = store_job_insert(s, &j)) < 0)
			break;
		if (!done)
			rc = store_work_add(s, j.id, WORK_POLL, NULL, now + 30LL * 86400 * 1000, NULL, 0, NULL);
		if (rc == 0 && deliveries) {
			struct delivery d;
			memset(&d, 0, sizeof d);
			sign_random_id("msg_", d.id, sizeof d.id);
			snprintf(d.job_id, sizeof d.job_id, "%s", j.id);
			snprintf(d.event, sizeof d.event, "job.succeeded");
			d.url = url;
			snprintf(d.status, sizeof d.status, "pending");
			d.created_at = now;
			d.next_at = now;
			rc = store_delivery_insert(s, &d);
			if (rc == 0)
				rc = store_work_add(s, j.id, WORK_DELIVER, d.id, now, NULL, 0, NULL);
			dlv++;
		}
		/* Reservoir sample of the ids. */
		if (sample > 0) {
			if (i < sample) {
				snprintf(picked[i], 48, "%s", j.id);
			} else {
				uint64_t k = rnd() % (uint64_t)(i + 1);
				if (k < (uint64_t)sample)
					snprintf(picked[k], 48, "%s", j.id);
			}
		}
		if (rc == 0 && (i % BATCH == BATCH - 1 || i == n - 1))
			rc = store_commit(s);
		if ((i + 1) % 100000 == 0)
			fprintf(stderr, "storegen: %lld / %lld jobs (%.1f s)\n", i + 1, n, mono_s() - t0);
	}
	if (rc < 0) {
		fprintf(stderr, "storegen: %s\n", store_errmsg(s));
		store_rollback(s);
		store_close(s);
		return 1;
	}
	store_close(s);
	if (ids_path) {
		FILE *f = fopen(ids_path, "w");
		if (!f) {
			perror(ids_path);
			return 1;
		}
		for (long long i = 0; i < sample; i++)
			fprintf(f, "%s\n", picked[i]);
		fclose(f);
	}
	free(picked);
	printf("{\"jobs\":%lld,\"waiting\":%lld,\"deliveries\":%lld,\"seconds\":%.2f}\n", n, waiting,
	       dlv, mono_s() - t0);
	return 0;
}
