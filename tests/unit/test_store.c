/*
 * test_store.c: the store seam (core/store.c) on the SQLite backend: spec
 * dispatch, store_describe, lease renewal and retention's purge.
 */
#include "store.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_describe(void)
{
	char out[256];
	store_describe("sqlite:/var/lib/g.db", out, sizeof out);
	CHECK_STR_EQ(out, "sqlite:/var/lib/g.db");
	store_describe("postgresql://gr:s3cret@db:5432/genrelay?sslmode=require", out, sizeof out);
	CHECK_STR_EQ(out, "postgresql://gr:***@db:5432/genrelay");
	CHECK(strstr(out, "s3cret") == NULL);
	store_describe("postgres://gr@db/genrelay", out, sizeof out);
	CHECK_STR_EQ(out, "postgres://gr@db/genrelay");
	store_describe("postgresql://db:5432/x?password=p", out, sizeof out);
	CHECK_STR_EQ(out, "postgresql://db:5432/x");
	char err[256] = "";
	CHECK(store_open("mysql://x", 0, err, sizeof err) == NULL);
	CHECK(strstr(err, "unsupported store") != NULL);
}

static void put_job(struct store *s, const char *id, enum job_status st, int64_t completed)
{
	struct job j;
	memset(&j, 0, sizeof j);
	snprintf(j.id, sizeof j.id, "%s", id);
	j.customer = "acme";
	j.model_id = "m";
	j.targets = "[\"fal:m\"]";
	j.input = "{}";
	j.status = st;
	j.created_at = 1000;
	j.completed_at = completed;
	CHECK_EQ_INT(store_job_insert(s, &j), 0);
}

static void test_sqlite(void)
{
	char dir[] = "/tmp/genrelay-test-store-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char spec[128], err[256] = "";
	snprintf(spec, sizeof spec, "sqlite:%s/s.db", dir);
	struct store *s = store_open(spec, 0, err, sizeof err);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_STR_EQ(store_kind(s), "sqlite");

	/* Lease renewal: the owner's live leases move, others' do not. */
	int64_t a, b, c;
	CHECK_EQ_INT(store_work_add(s, "job_a", WORK_POLL, NULL, 0, "me", 5000, &a), 0);
	CHECK_EQ_INT(store_work_add(s, "job_b", WORK_POLL, NULL, 0, "other", 5000, &b), 0);
	int64_t renew[] = { a, b };
	CHECK_EQ_INT(store_work_renew(s, "me", renew, 2, 90000), 0); /* b is not mine */
	struct work w[4];
	size_t n = 0;
	CHECK_EQ_INT(store_work_claim(s, "claimer", 6000, 1000, w, 4, &n), 0);
	CHECK_EQ_INT(n, 1); /* job_b's lease expired at 5000; job_a's runs to 90000 */
	CHECK_STR_EQ(w[0].job_id, "job_b");

	/* Purge: finished and old goes with its rows; recent, running, or with
	 * work left stays. */
	put_job(s, "job_old", JOB_SUCCEEDED, 2000);
	put_job(s, "job_new", JOB_SUCCEEDED, 50000);
	put_job(s, "job_run", JOB_PROCESSING, 0);
	put_job(s, "job_busy", JOB_FAILED, 2000);
	CHECK_EQ_INT(store_work_add(s, "job_busy", WORK_DELIVER, "msg_x", 0, NULL, 0, &c), 0);
	CHECK_EQ_INT(store_event_add(s, "job_old", 2000, "ended", "{}"), 0);
	CHECK_EQ_INT(store_idem_put(s, "acme", "k1", "h", "job_old", 1000), 0);
	struct delivery d = { .id = "msg_old", .job_id = "job_old", .event = "job.succeeded",
			      .url = "http://127.0.0.1:9/", .status = "delivered" };
	CHECK_EQ_INT(store_delivery_insert(s, &d), 0);
	CHECK_EQ_INT(store_attempt_insert(s, "msg_old", "job_old", 2000, 200, 1.5, NULL, "v", "{}", 2), 0);
	int purged = -1;
	CHECK_EQ_INT(store_purge(s, 10000, 100, &purged), 0);
	CHECK_EQ_INT(purged, 1);
	struct job j;
	CHECK_EQ_INT(store_job_get(s, "job_old", NULL, &j), 1);
	char hash[80], jid[48];
	CHECK_EQ_INT(store_idem_get(s, "acme", "k1", hash, sizeof hash, jid, sizeof jid), 1);
	json_t *ev = store_job_events(s, "job_old");
	CHECK_EQ_INT(json_array_size(ev), 0);
	json_decref(ev);
	json_t *dl = store_job_deliveries(s, "job_old");
	CHECK_EQ_INT(json_array_size(dl), 0);
	json_decref(dl);
	const char *kept[] = { "job_new", "job_run", "job_busy" };
	for (size_t i = 0; i < 3; i++) {
		CHECK_EQ_INT(store_job_get(s, kept[i], NULL, &j), 0);
		job_clear(&j);
	}
	CHECK_EQ_INT(store_purge(s, 10000, 100, &purged), 0);
	CHECK_EQ_INT(purged, 0);
	/* Not inside a batch. */
	store_set_batching(s, 1);
	CHECK(store_purge(s, 10000, 100, &purged) < 0);
	store_close(s);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
	test_describe();
	test_sqlite();
	return check_done();
}
