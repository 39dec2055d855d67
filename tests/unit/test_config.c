/*
 * test_config.c: the configuration loader (core/config*.c).
 */
#include "check.h"
#include "config.h"
#include "scrub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/genrelay-config-XXXXXX";
static char conf_path[256];

static const char *write_conf(const char *text)
{
	FILE *f;
	snprintf(conf_path, sizeof conf_path, "%s/genrelay.conf.lua", tmpdir);
	f = fopen(conf_path, "w");
	if (!f)
		return NULL;
	fputs(text, f);
	fclose(f);
	return conf_path;
}

/*
 * The file must be refused with an error containing want, and the error
 * must not contain secret (a value from the file that must never leak).
 */
static void check_refused(const char *text, const char *want, const char *secret)
{
	char err[512];
	struct config *c = config_load(write_conf(text), err, sizeof err);
	CHECK(c == NULL);
	CHECK(strstr(err, want) != NULL);
	if (!strstr(err, want))
		fprintf(stderr, "    config: %s\n    err: %s\n    want: %s\n", text, err, want);
	if (secret) {
		CHECK(strstr(err, secret) == NULL);
		if (strstr(err, secret))
			fprintf(stderr, "    secret leaked: %s\n", err);
	}
	config_free(c);
}

/* log.level and log.format; log.level wins over the older log_level. */
static void test_log_keys(void)
{
	char err[512];
	struct config *c = config_load(write_conf("log_level = 'warn'\nlog = { level = 'debug', format = 'json' }\n"),
				       err, sizeof err);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_STR_EQ(c->log_level, "debug");
	CHECK_STR_EQ(c->log_format, "json");
	config_free(c);
	c = config_load(write_conf("log_level = 'warn'\n"), err, sizeof err);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_STR_EQ(c->log_level, "warn");
	CHECK_STR_EQ(c->log_format, "text");
	config_free(c);
}

static void test_defaults(void)
{
	char err[256];
	struct config *c = config_load(NULL, err, sizeof err);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK(c->path == NULL);
	CHECK_STR_EQ(c->listen, "127.0.0.1:8080");
	CHECK_STR_EQ(c->public_url, "http://127.0.0.1:8080");
	CHECK_STR_EQ(c->store, "sqlite:genrelay.db");
	CHECK_STR_EQ(c->scripts, "scripts");
	CHECK_EQ_INT(c->workers, 1);
	CHECK(c->server_secret == NULL);
	CHECK_STR_EQ(c->durability, "normal");
	CHECK_STR_EQ(c->log_level, "info");
	CHECK(json_is_object(c->providers) && json_object_size(c->providers) == 0);
	CHECK_EQ_INT(c->ncustomers, 0);
	CHECK_EQ_INT(c->naliases, 0);
	CHECK_EQ_INT(c->nretry, 9);
	CHECK(c->nretry == 9 && c->retry[0] == 5 && c->retry[1] == 15 && c->retry[2] == 60 &&
	      c->retry[3] == 300 && c->retry[4] == 900 && c->retry[5] == 3600 &&
	      c->retry[6] == 21600 && c->retry[7] == 43200 && c->retry[8] == 86400);
	CHECK(c->webhook_timeout_s == 10);
	CHECK(c->retry_jitter == 0.2);
	CHECK_EQ_INT(c->require_https, 1);
	CHECK_EQ_INT(c->allow_private, 0);
	CHECK_EQ_INT(c->webhook_response_bytes, 65536);
	CHECK(c->submit_window_s == 300);
	CHECK(c->job_deadline_s == 3600);
	CHECK(c->poll_after_s == 30);
	CHECK(c->poll_interval_s == 5);
	CHECK(c->poll_max_s == 300);
	CHECK(c->sync_wait_s == 55);
	CHECK_EQ_INT(c->body_bytes, 1048576);
	CHECK_EQ_INT(c->buffered_bytes, 64 * 1048576);
	CHECK(c->metrics_token == NULL && c->metrics_listen == NULL);
	CHECK(!config_is_metrics_token(c, "anything-at-all-here"));
	CHECK_EQ_INT(c->lua_instructions, 10000000);
	CHECK_EQ_INT(c->lua_memory_mb, 32);
	CHECK_EQ_INT(c->max_connections, 10000);
	CHECK_EQ_INT(c->per_host, 64);
	CHECK(c->connection_timeout_s == 30);
	CHECK(config_customer_by_key(c, "anything") == NULL);
	CHECK(config_provider(c, "fal") == NULL);
	CHECK(config_alias(c, "x") == NULL);
	config_free(c);

	/* an empty file is all defaults too */
	c = config_load(write_conf("-- nothing\n"), err, sizeof err);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR_EQ(c->path, conf_path);
		CHECK_STR_EQ(c->listen, "127.0.0.1:8080");
		CHECK_EQ_INT(c->nretry, 9);
	}
	config_free(c);

	/* locals and helper functions declared local are fine */
	c = config_load(write_conf("local port = 9001\nlocal function env(n) return os.getenv(n) end\n"
				   "listen = '127.0.0.1:' .. port\n"),
			err, sizeof err);
	CHECK(c != NULL);
	if (c)
		CHECK_STR_EQ(c->public_url, "http://127.0.0.1:9001");
	config_free(c);
}

static const char full_conf[] =
	"listen = '0.0.0.0:9090'\n"
	"public_url = 'https://relay.example.com/'\n"
	"store = 'sqlite:/var/lib/genrelay/db.sqlite'\n"
	"scripts = '/opt/genrelay/scripts'\n"
	"workers = 4\n"
	"server_secret = 'a-server-secret-of-32-bytes-xxxx'\n"
	"durability = 'fsync'\n"
	"log_level = 'debug'\n"
	"metrics_token = 'metrics-token-0123456789'\n"
	"metrics_listen = '127.0.0.1:9091'\n"
	"providers = {\n"
	"  fal = { base_url = 'https://queue.fal.run', key = os.getenv('GENRELAY_TEST_FAL_KEY'),\n"
	"          jwks_url = 'https://rest.alpha.fal.ai/.well-known/jwks.json' },\n"
	"  krea = { base_url = 'https://api.krea.ai', key = os.getenv('GENRELAY_TEST_UNSET'), n = 3,\n"
	"           extra = { list = {1, 2}, flag = true } },\n"
	"}\n"
	"customers = {\n"
	"  acme = { api_key = 'sk_acme_0123456789', webhook_secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',\n"
	"           hook = 'slack', webhook_url = 'https://acme.example/hooks' },\n"
	"  beta = { api_key = 'sk_beta_9876543210', rate = { per_s = 2.5, burst = 10 } },\n"
	"}\n"
	"models = {\n"
	"  ['flux-dev'] = { 'fal:fal-ai/flux/dev', 'krea:bfl/flux-1-dev' },\n"
	"  ['flux-pro'] = { targets = { 'fal:fal-ai/flux-pro' }, failover_on_failure = true },\n"
	"  single = 'krea:image/x',\n"
	"}\n"
	"webhooks = { retry = {1, 2.5, 10}, timeout_s = 5, retry_jitter = 0, require_https = false,\n"
	"             allow_private = true, response_bytes = 4096 }\n"
	"jobs = { submit_window_s = 60, job_deadline_s = 600, poll_after_s = 10, poll_interval_s = 2,\n"
	"         poll_max_s = 20, sync_wait_s = 30 }\n"
	"limits = { body_bytes = 2048, lua_instructions = 5000, lua_memory_mb = 8,\n"
	"           max_connections = 100, connection_timeout_s = 5, buffered_bytes = 65536,\n"
	"           per_host = 256 }\n";

/* Secrets and proxies that are accepted. */
static void test_secrets_and_proxies(void)
{
	static const char text[] =
		"customers = {\n"
		"  a = { api_key = 'k_a', webhook_secret = 'whsec_YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJi' },\n" /* 24 bytes */
		"  b = { api_key = 'k_b', webhook_secret = 'whsec_-vv8_f7_Y2NjY2NjY2NjY2NjY2NjY2NjY2M' },\n" /* URL-safe, unpadded */
		"  c = { api_key = 'k_c', webhook_secret = 'whsec_' .. string.rep('eHh4', 170) },\n" /* 510 bytes */
		"  d = { api_key = 'k_d', webhook_secret = 'a raw secret' },\n"
		"}\n"
		"webhooks = { proxy = 'http://user:pw@proxy.example:3128' }\n"
		"providers = { fal = { base_url = 'https://queue.fal.run', proxy = 'socks5h://127.0.0.1:1080' } }\n";
	char err[512];
	struct config *c = config_load(write_conf(text), err, sizeof err);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "    err: %s\n", err);
		return;
	}
	CHECK_STR_EQ(c->webhook_proxy, "http://user:pw@proxy.example:3128");
	CHECK_STR_EQ(json_string_value(json_object_get(config_provider(c, "fal"), "proxy")),
		     "socks5h://127.0.0.1:1080");
	CHECK_EQ_INT(c->ncustomers, 4);
	config_free(c);
	c = config_load(write_conf("webhooks = { allow_private = false }\n"), err, sizeof err);
	CHECK(c != NULL);
	if (c)
		CHECK(c->webhook_proxy == NULL);
	config_free(c);
}

static void test_full(void)
{
	char err[512];
	struct config *c;

	setenv("GENRELAY_TEST_FAL_KEY", "fal-secret-from-env", 1);
	unsetenv("GENRELAY_TEST_UNSET");
	c = config_load(write_conf(full_conf), err, sizeof err);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "    %s\n", err);
		return;
	}
	CHECK_STR_EQ(c->listen, "0.0.0.0:9090");
	CHECK_STR_EQ(c->public_url, "https://relay.example.com");
	CHECK_STR_EQ(c->store, "sqlite:/var/lib/genrelay/db.sqlite");
	CHECK_STR_EQ(c->scripts, "/opt/genrelay/scripts");
	CHECK_EQ_INT(c->workers, 4);
	CHECK_STR_EQ(c->server_secret, "a-server-secret-of-32-bytes-xxxx");
	CHECK_STR_EQ(c->durability, "fsync");
	CHECK_STR_EQ(c->log_level, "debug");

	json_t *fal = config_provider(c, "fal");
	CHECK(fal != NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(fal, "key")), "fal-secret-from-env");
	CHECK_STR_EQ(json_string_value(json_object_get(fal, "base_url")), "https://queue.fal.run");
	json_t *krea = config_provider(c, "krea");
	CHECK(krea != NULL);
	CHECK(json_object_get(krea, "key") == NULL); /* unset env var: absent */
	CHECK_EQ_INT(json_integer_value(json_object_get(krea, "n")), 3);
	CHECK(json_is_array(json_object_get(json_object_get(krea, "extra"), "list")));
	CHECK(config_provider(c, "nope") == NULL);

	CHECK_EQ_INT(c->ncustomers, 2);
	const struct config_customer *a = config_customer_by_name(c, "acme");
	CHECK(a != NULL);
	if (a) {
		CHECK_STR_EQ(a->api_key, "sk_acme_0123456789");
		CHECK_STR_EQ(a->webhook_secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
		CHECK_STR_EQ(a->hook, "slack");
		CHECK_STR_EQ(a->webhook_url, "https://acme.example/hooks");
	}
	const struct config_customer *b = config_customer_by_name(c, "beta");
	CHECK(b != NULL);
	if (b) {
		CHECK_STR_EQ(b->hook, "default");
		CHECK(b->webhook_secret == NULL);
		CHECK(b->webhook_url == NULL);
	}
	CHECK(config_customer_by_key(c, "sk_acme_0123456789") == a);
	CHECK(config_customer_by_key(c, "sk_beta_9876543210") == b);
	CHECK(config_customer_by_key(c, "sk_acme_012345678") == NULL);
	CHECK(config_customer_by_key(c, "sk_acme_01234567890") == NULL);
	CHECK(config_customer_by_key(c, "") == NULL);
	CHECK(config_customer_by_key(c, NULL) == NULL);
	CHECK(config_customer_by_name(c, "gamma") == NULL);

	CHECK_EQ_INT(c->naliases, 3);
	const struct config_alias *fd = config_alias(c, "flux-dev");
	CHECK(fd != NULL);
	if (fd) {
		CHECK_EQ_INT(fd->ntargets, 2);
		CHECK_STR_EQ(fd->targets[0], "fal:fal-ai/flux/dev");
		CHECK_STR_EQ(fd->targets[1], "krea:bfl/flux-1-dev");
		CHECK_EQ_INT(fd->failover_on_failure, 0);
	}
	const struct config_alias *fp = config_alias(c, "flux-pro");
	CHECK(fp != NULL);
	if (fp) {
		CHECK_EQ_INT(fp->ntargets, 1);
		CHECK_STR_EQ(fp->targets[0], "fal:fal-ai/flux-pro");
		CHECK_EQ_INT(fp->failover_on_failure, 1);
	}
	const struct config_alias *si = config_alias(c, "single");
	CHECK(si != NULL && si->ntargets == 1);

	CHECK_EQ_INT(c->nretry, 3);
	CHECK(c->nretry == 3 && c->retry[0] == 1 && c->retry[1] == 2.5 && c->retry[2] == 10);
	CHECK(c->webhook_timeout_s == 5);
	CHECK(c->retry_jitter == 0);
	CHECK_EQ_INT(c->require_https, 0);
	CHECK_EQ_INT(c->allow_private, 1);
	CHECK_EQ_INT(c->webhook_response_bytes, 4096);
	CHECK(c->submit_window_s == 60);
	CHECK(c->job_deadline_s == 600);
	CHECK(c->poll_after_s == 10);
	CHECK(c->poll_interval_s == 2);
	CHECK(c->poll_max_s == 20);
	CHECK(c->sync_wait_s == 30);
	CHECK_EQ_INT(c->body_bytes, 2048);
	CHECK_EQ_INT(c->lua_instructions, 5000);
	CHECK_EQ_INT(c->lua_memory_mb, 8);
	CHECK_EQ_INT(c->max_connections, 100);
	CHECK_EQ_INT(c->per_host, 256);
	CHECK(c->connection_timeout_s == 5);
		CHECK_EQ_INT(c->buffered_bytes, 65536);
	CHECK_STR_EQ(c->metrics_listen, "127.0.0.1:9091");
	CHECK(config_is_metrics_token(c, "metrics-token-0123456789"));
	CHECK(!config_is_metrics_token(c, "metrics-token-012345678"));
	CHECK(!config_is_admin_key(c, "metrics-token-0123456789"));
	{
		const struct config_customer *b = config_customer_by_name(c, "beta");
		const struct config_customer *a = config_customer_by_name(c, "acme");
		CHECK(b && b->rate_per_s == 2.5 && b->rate_burst == 10);
		CHECK(a && a->rate_per_s == 0); /* no rate: no limit */
	}
	config_free(c);

	/* IPv6 listen and the public URL derived from it */
	c = config_load(write_conf("listen = '[::]:7000'\n"), err, sizeof err);
	CHECK(c != NULL);
	if (c)
		CHECK_STR_EQ(c->public_url, "http://[::1]:7000");
	config_free(c);
	c = config_load(write_conf("listen = '[::1]:7001' store = 'postgresql://db/genrelay'\n"), err,
			sizeof err);
	CHECK(c != NULL);
	config_free(c);
}

static void test_errors(void)
{
	/* unknown keys: typos are caught */
	check_refused("lisen = '127.0.0.1:1'\n", "unknown key 'lisen'", NULL);
	check_refused("function helper() end\n", "unknown key 'helper'", NULL);
	check_refused("webhooks = { retyr = {1} }\n", "unknown key 'webhooks.retyr'", NULL);
	check_refused("jobs = { poll_every = 1 }\n", "unknown key 'jobs.poll_every'", NULL);
	check_refused("limits = { lua_mem = 1 }\n", "unknown key 'limits.lua_mem'", NULL);
	check_refused("customers = { acme = { api_key = 'sk_x_1', api_kye = 'sk_x_1' } }\n",
		      "unknown key 'customers.acme.api_kye'", "sk_x_1");
	check_refused("models = { m = { targets = { 'a:b' }, failover = true } }\n",
		      "unknown key 'models.m.failover'", NULL);

	/* listen, public_url, store */
	check_refused("listen = 'nope'\n", "listen:", NULL);
	check_refused("listen = '1.2.3.4:99999'\n", "listen:", NULL);
	check_refused("listen = '[zz]:80'\n", "listen:", NULL);
	check_refused("listen = ':80'\n", "listen:", NULL);
	check_refused("listen = 8080\n", "listen: must be a string", NULL);
	check_refused("public_url = 'ftp://x'\n", "public_url:", NULL);
	check_refused("public_url = 'http://'\n", "public_url:", NULL);
	check_refused("public_url = 'https://a b'\n", "public_url:", NULL);
	check_refused("store = 'mysql://user:hunter2@db/x'\n", "store:", "hunter2");
	check_refused("store = 'sqlite:'\n", "store:", NULL);
	check_refused("scripts = {}\n", "scripts: must be a string", NULL);

	/* numbers and ranges */
	check_refused("workers = 0\n", "workers:", NULL);
	check_refused("workers = 65\n", "workers:", NULL);
	check_refused("workers = 1.5\n", "workers: must be an integer", NULL);
	check_refused("workers = '2'\n", "workers: must be an integer", NULL);
	check_refused("durability = 'sometimes'\n", "durability:", NULL);
	check_refused("log_level = 'loud'\n", "log_level:", NULL);
	check_refused("log = { level = 'loud' }\n", "log_level:", NULL);
	check_refused("log = { format = 'xml' }\n", "log.format:", NULL);
	check_refused("log = { colour = 'red' }\n", "log", NULL);
	check_refused("log = 'json'\n", "log: must be a table", NULL);
	check_refused("server_secret = 'short-secret'\n", "server_secret:", "short-secret");
	check_refused("server_secret = 12345678901234567\n", "server_secret: must be a string", "12345678901234567");

	/* customers */
	check_refused("customers = { acme = { api_key = 42 } }\n",
		      "customers.acme.api_key: must be a string", NULL);
	check_refused("customers = { acme = {} }\n", "customers.acme.api_key: is required", NULL);
	check_refused("customers = { acme = { api_key = '' } }\n", "customers.acme.api_key", NULL);
	check_refused("customers = { acme = 'sk_live_abc' }\n", "customers.acme: must be a table",
		      "sk_live_abc");
	check_refused("customers = { a = { api_key = 'sk_same_secret' }, b = { api_key = 'sk_same_secret' } }\n",
		      ".api_key: same as", "sk_same_secret");
	check_refused("customers = { acme = { api_key = 'sk_k_1', hook = '../evil' } }\n",
		      "customers.acme.hook", "sk_k_1");
	check_refused("customers = { acme = { api_key = 'sk_k_2', webhook_secret = true } }\n",
		      "customers.acme.webhook_secret: must be a string", "sk_k_2");
	check_refused("customers = { acme = { api_key = 'sk_k_3', webhook_url = 'javascript:alert(1)' } }\n",
		      "customers.acme.webhook_url", "sk_k_3");
	check_refused("customers = { ['a b'] = { api_key = 'sk_k_4' } }\n", "customers.a b: name", "sk_k_4");
	/* whsec_ secrets: base64 of at least 24 bytes, or the config is refused
	 * (a secret that cannot sign would mean unsigned deliveries). */
	check_refused("customers = { acme = { api_key = 'sk_k_5', webhook_secret = 'whsec_not base64!' } }\n",
		      "customers.acme.webhook_secret: not valid base64 after whsec_", "not base64");
	check_refused("customers = { acme = { api_key = 'sk_k_6', webhook_secret = 'whsec_MfKQ9r8G*YqrTwjUPD8ILPZIo2LaLaSw' } }\n",
		      "customers.acme.webhook_secret: not valid base64", "MfKQ9r8G");
	check_refused("customers = { acme = { api_key = 'sk_k_7', webhook_secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA' } }\n",
		      "customers.acme.webhook_secret: not valid base64", "MfKQ9r8G"); /* 4n+1 characters */
	check_refused("customers = { acme = { api_key = 'sk_k_7b', webhook_secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS' } }\n",
		      "customers.acme.webhook_secret: whsec_ key shorter than 24 bytes", "MfKQ9r8G"); /* one character short */
	check_refused("customers = { acme = { api_key = 'sk_k_8', webhook_secret = 'whsec_YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=' } }\n",
		      "customers.acme.webhook_secret: whsec_ key shorter than 24 bytes", "YWFhYWFh"); /* 23 bytes */
	check_refused("customers = { acme = { api_key = 'sk_k_9', webhook_secret = 'whsec_' } }\n",
		      "customers.acme.webhook_secret: whsec_ key shorter than 24 bytes", NULL);
	check_refused("customers = { acme = { api_key = 'sk_k_10', webhook_secret = 'whsec_c2hvcnQ=' } }\n",
		      "customers.acme.webhook_secret: whsec_ key shorter", "c2hvcnQ");
	check_refused("customers = { acme = { api_key = 'sk_k_11', webhook_secret = 'whsec_ YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJi' } }\n",
		      "customers.acme.webhook_secret: not valid base64", "YmJiYmJi");
	check_refused("customers = { acme = { api_key = 'sk_k_12', webhook_secret = 'whsec_YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJi\\n' } }\n",
		      "customers.acme.webhook_secret: not valid base64", "YmJiYmJi");
	check_refused("customers = { acme = { api_key = 'sk_k_13', webhook_secret = 'whsec_' .. string.rep('eHh4', 172) } }\n",
		      "customers.acme.webhook_secret: whsec_ key longer than 512 bytes", "eHh4eHh4");
	check_refused("customers = { acme = { api_key = 'sk_k_14', webhook_secret = '' } }\n",
		      "customers.acme.webhook_secret: must not be empty", NULL);
	check_refused("customers = { acme = { api_key = 'sk_k_15', webhook_url = 'https://h.example/x' } }\n",
		      "customers.acme.webhook_secret: is required with a webhook_url", "sk_k_15");
	/* proxies */
	check_refused("webhooks = { proxy = 'ftp://proxy.example:21' }\n", "webhooks.proxy: must be a proxy URL", NULL);
	check_refused("webhooks = { proxy = 'http://user:pw-secret@' }\n", "webhooks.proxy: must be a proxy URL", "pw-secret");
	check_refused("webhooks = { proxy = 'http://proxy.example :3128' }\n", "webhooks.proxy: must be a proxy URL", NULL);
	check_refused("webhooks = { proxy = '' }\n", "webhooks.proxy: must not be empty", NULL);
	check_refused("webhooks = { proxy = 3128 }\n", "webhooks.proxy: must be a string", NULL);
	check_refused("providers = { fal = { proxy = 'proxy.example:3128' } }\n", "providers.fal.proxy: must be a proxy URL", NULL);
	check_refused("providers = { fal = { proxy = 3128 } }\n", "providers.fal.proxy: must be a proxy URL", NULL);
	check_refused("customers = 'x'\n", "customers: must be a table", NULL);

	/* models */
	check_refused("models = { x = { 'nocolon' } }\n", "models.x[1]: must be \"provider:model\"", NULL);
	check_refused("models = { x = { 'fal:ok', 'bad provider:m' } }\n", "models.x[2]", NULL);
	check_refused("models = { x = {} }\n", "models.x: must be a non-empty list", NULL);
	check_refused("models = { x = 5 }\n", "models.x: must be a list", NULL);
	check_refused("models = { x = { targets = { 'a:b' }, failover_on_failure = 'yes' } }\n",
		      "models.x.failover_on_failure: must be true or false", NULL);
	check_refused("models = { x = { targets = { 'a:' } } }\n", "models.x.targets[1]", NULL);

	/* webhooks, jobs, limits */
	check_refused("webhooks = 5\n", "webhooks: must be a table", NULL);
	check_refused("webhooks = { retry = {} }\n", "webhooks.retry:", NULL);
	check_refused("webhooks = { retry = { 5, -1 } }\n", "webhooks.retry[2]", NULL);
	check_refused("webhooks = { retry = { 5, 'x' } }\n", "webhooks.retry[2]", NULL);
	check_refused("webhooks = { retry = 5 }\n", "webhooks.retry:", NULL);
	check_refused("webhooks = { timeout_s = 0 }\n", "webhooks.timeout_s:", NULL);
	check_refused("webhooks = { retry_jitter = 2 }\n", "webhooks.retry_jitter:", NULL);
	check_refused("webhooks = { require_https = 'no' }\n", "webhooks.require_https: must be true or false", NULL);
	check_refused("webhooks = { allow_private = 1 }\n", "webhooks.allow_private", NULL);
	check_refused("webhooks = { response_bytes = 0 }\n", "webhooks.response_bytes", NULL);
	check_refused("jobs = { poll_interval_s = -1 }\n", "jobs.poll_interval_s:", NULL);
	check_refused("jobs = { submit_window_s = 0 }\n", "jobs.submit_window_s:", NULL);
	check_refused("jobs = { job_deadline_s = 0/0 }\n", "jobs.job_deadline_s:", NULL);
	check_refused("jobs = { poll_interval_s = 60, poll_max_s = 10 }\n", "jobs.poll_max_s", NULL);
	check_refused("limits = { lua_memory_mb = 0 }\n", "limits.lua_memory_mb:", NULL);
	check_refused("limits = { body_bytes = 'big' }\n", "limits.body_bytes: must be an integer", NULL);
	check_refused("limits = { lua_instructions = 10 }\n", "limits.lua_instructions", NULL);
	check_refused("limits = { max_connections = -5 }\n", "limits.max_connections", NULL);
	check_refused("limits = { per_host = 0 }\n", "limits.per_host", NULL);
	check_refused("limits = { connection_timeout_s = 0 }\n", "limits.connection_timeout_s", NULL);

	check_refused("limits = { buffered_bytes = 0 }\n", "limits.buffered_bytes", NULL);
	check_refused("limits = { body_bytes = 2048, buffered_bytes = 1024 }\n",
		      "limits.buffered_bytes: must be at least limits.body_bytes", NULL);

	/* rate limits, metrics */
	check_refused("customers = { acme = { api_key = 'sk_r_1', rate = 5 } }\n",
		      "customers.acme.rate: must be a table", "sk_r_1");
	check_refused("customers = { acme = { api_key = 'sk_r_2', rate = { burst = 5 } } }\n",
		      "customers.acme.rate.per_s: is required", "sk_r_2");
	check_refused("customers = { acme = { api_key = 'sk_r_3', rate = { per_s = 0 } } }\n",
		      "customers.acme.rate.per_s", "sk_r_3");
	check_refused("customers = { acme = { api_key = 'sk_r_4', rate = { per_s = 1, burst = 0 } } }\n",
		      "customers.acme.rate.burst", "sk_r_4");
	check_refused("customers = { acme = { api_key = 'sk_r_5', rate = { per_s = 1, brust = 2 } } }\n",
		      "unknown key 'customers.acme.rate.brust'", "sk_r_5");
	check_refused("metrics_token = 'short-token'\n", "metrics_token: must be at least 16 bytes",
		      "short-token");
	check_refused("metrics_listen = 'nowhere'\n", "metrics_listen:", NULL);

	/* providers */
	check_refused("providers = { fal = 'fal-key-123' }\n", "providers.fal: must be a table", "fal-key-123");
	check_refused("providers = { ['bad-name'] = {} }\n", "providers:", NULL);
	check_refused("providers = { fal = { f = function() end } }\n", "providers.fal.f: a function", NULL);
	check_refused("providers = { fal = { 1, 2 } }\n", "providers.fal: must be a table of settings", NULL);
	check_refused("providers = { fal = { x = 0/0 } }\n", "providers.fal.x: NaN", NULL);

	/* Lua errors: syntax (a string literal near the error is not quoted), runtime, missing file */
	check_refused("customers = { a = { api_key = \"sk_live_TOPSECRET\n", "genrelay.conf.lua:1:",
		      "TOPSECRET");
	check_refused("customers = { a = { api_key = 'sk_live_TOPSECRET' ", "genrelay.conf.lua:",
		      "TOPSECRET");
	check_refused("error('boom')\n", "boom", NULL);
	check_refused("local k = ('sk_live_TOPSECRET')()\n", "genrelay.conf.lua:1:", "TOPSECRET");
	check_refused("local t = {}\nlocal k = t['sk_live_TOPSECRET'].x\n", "genrelay.conf.lua:2:", "TOPSECRET");
	check_refused("listen = 1 +\n", "genrelay.conf.lua:", NULL);
	{
		char err[256];
		struct config *c = config_load("/nonexistent/genrelay.conf.lua", err, sizeof err);
		CHECK(c == NULL);
		CHECK(strstr(err, "/nonexistent/genrelay.conf.lua") != NULL);
		config_free(c);
	}
}

/* server_secret and server_secret_previous from the environment. */
static void test_server_secret_env(void)
{
	char err[512];
	struct config *c;
	unsetenv("GENRELAY_SERVER_SECRET");
	unsetenv("GENRELAY_SERVER_SECRET_PREVIOUS");
	c = config_load(write_conf("-- nothing\n"), err, sizeof err);
	CHECK(c && c->server_secret == NULL && c->server_secret_previous == NULL);
	CHECK(c && c->store_insecure_permissions == 0);
	config_free(c);

	setenv("GENRELAY_SERVER_SECRET", "env-secret-0123456789", 1);
	setenv("GENRELAY_SERVER_SECRET_PREVIOUS", "env-previous-0123456789", 1);
	c = config_load(NULL, err, sizeof err);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR_EQ(c->server_secret, "env-secret-0123456789");
		CHECK_STR_EQ(c->server_secret_previous, "env-previous-0123456789");
		/* Both are secrets to scrub. */
		CHECK(scrub_found(c->scrub, "x env-secret-0123456789", 23));
		CHECK(scrub_found(c->scrub, "env-previous-0123456789", 23));
	}
	config_free(c);

	/* The file wins over the environment, key by key. */
	c = config_load(write_conf("server_secret = 'file-secret-0123456789'\n"), err, sizeof err);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR_EQ(c->server_secret, "file-secret-0123456789");
		CHECK_STR_EQ(c->server_secret_previous, "env-previous-0123456789");
	}
	config_free(c);
	c = config_load(write_conf("server_secret_previous = 'file-previous-0123456789'\n"
				   "store_insecure_permissions = true\n"), err, sizeof err);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR_EQ(c->server_secret, "env-secret-0123456789");
		CHECK_STR_EQ(c->server_secret_previous, "file-previous-0123456789");
		CHECK_EQ_INT(c->store_insecure_permissions, 1);
	}
	config_free(c);

	/* A short one is refused, naming where it came from, never echoed. */
	setenv("GENRELAY_SERVER_SECRET", "shortenv", 1);
	check_refused("-- nothing\n", "GENRELAY_SERVER_SECRET: must be at least 16 bytes", "shortenv");
	setenv("GENRELAY_SERVER_SECRET", "env-secret-0123456789", 1);
	setenv("GENRELAY_SERVER_SECRET_PREVIOUS", "shortprev", 1);
	check_refused("-- nothing\n", "GENRELAY_SERVER_SECRET_PREVIOUS: must be at least 16 bytes",
		      "shortprev");
	check_refused("server_secret_previous = 'short-prev'\n", "server_secret_previous: must be at least 16",
		      "short-prev");
	check_refused("store_insecure_permissions = 'yes'\n",
		      "store_insecure_permissions: must be true or false", NULL);
	unsetenv("GENRELAY_SERVER_SECRET");
	unsetenv("GENRELAY_SERVER_SECRET_PREVIOUS");
}

/* The scrubber holds every secret of the config and nothing else. */
static void test_scrub_set(void)
{
	char err[512];
	struct config *c = config_load(write_conf(
		"server_secret = 'server-secret-0123456789'\n"
		"admin_key = 'admin-key-0123456789abcdef'\n"
		"providers = { fal = { key = 'fal-key-0123', base_url = 'http://127.0.0.1:1/fal',\n"
		"  auth = { bearer_token = 'nested-token-0123' }, api_keys = { 'list-key-1', 'list-key-2' } } }\n"
		"customers = { acme = { api_key = 'acme-api-key', webhook_secret = 'whsec_c2VjcmV0LWJ5dGVzLWZvci10aGUtdW5pdC10ZXN0LTAxMjM=' } }\n"),
		err, sizeof err);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "    %s\n", err);
		return;
	}
	static const char *const secrets[] = { "server-secret-0123456789", "admin-key-0123456789abcdef",
		"fal-key-0123", "nested-token-0123", "list-key-1", "list-key-2", "acme-api-key",
		"whsec_c2VjcmV0LWJ5dGVzLWZvci10aGUtdW5pdC10ZXN0LTAxMjM=", "c2VjcmV0LWJ5dGVzLWZvci10aGUtdW5pdC10ZXN0LTAxMjM=" };
	for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
		char *out = scrub_dup(c->scrub, secrets[i], strlen(secrets[i]), NULL);
		CHECK_STR_EQ(out, "[redacted]");
		free(out);
	}
	CHECK(!scrub_found(c->scrub, "http://127.0.0.1:1/fal", 22));
	CHECK(!scrub_found(c->scrub, "acme", 4));
	config_free(c);
}

/* providers.NAME.keys: checked, its keys are secrets, its ids are not. */
static void test_key_pool(void)
{
	char err[512];
	check_refused("providers = { fal = { keys = 'pool-secret-0' } }\n", "providers.fal.keys: must be a list", "pool-secret-0");
	check_refused("providers = { fal = { keys = {} } }\n", "providers.fal.keys: must be a list", NULL);
	check_refused("providers = { fal = { keys = { { key = '' } } } }\n", "providers.fal.keys[1].key", NULL);
	check_refused("providers = { fal = { keys = { { key = 'pool-secret-1', weight = 0 } } } }\n",
		      "providers.fal.keys[1].weight", "pool-secret-1");
	check_refused("providers = { fal = { keys = { { key = 'pool-secret-1', wieght = 2 } } } }\n",
		      "providers.fal.keys[1].wieght: unknown", "pool-secret-1");
	check_refused("providers = { fal = { keys = { { key = 'pool-secret-1', max_inflight = -1 } } } }\n",
		      "providers.fal.keys[1].max_inflight: must be an integer from 0 to 1000000", "pool-secret-1");
	check_refused("providers = { fal = { keys = { { key = 'pool-secret-1', max_inflight = 1.5 } } } }\n",
		      "providers.fal.keys[1].max_inflight", "pool-secret-1");
	check_refused("providers = { fal = { keys = { { key = 'pool-secret-1', id = 'a b' } } } }\n",
		      "providers.fal.keys[1].id", "pool-secret-1");
	check_refused("providers = { fal = { keys = { { key = 'pool-secret-1' }, { key = 'pool-secret-2', id = 'key1' } } } }\n",
		      "providers.fal.keys[2].id: key1 is taken", "pool-secret-2");
	struct config *c = config_load(write_conf(
		"providers = { fal = { base_url = 'http://127.0.0.1:1/fal', keys = {\n"
		"  { key = 'pool-secret-1', weight = 3, id = 'primary', max_inflight = 4 }, { key = 'pool-secret-2' } } } }\n"),
		err, sizeof err);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "    %s\n", err);
		return;
	}
	CHECK(scrub_found(c->scrub, "pool-secret-1", 13));
	CHECK(scrub_found(c->scrub, "pool-secret-2", 13));
	CHECK(!scrub_found(c->scrub, "primary", 7));
	config_free(c);
}

/* customers.NAME.budget */
static void test_budget(void)
{
	char err[512];
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = 5 } }\n", "customers.acme.budget: must be a table", "sk_b_1");
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = {} } }\n", "customers.acme.budget.amount: is required", "sk_b_1");
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = { amount = 0 } } }\n", "customers.acme.budget.amount", "sk_b_1");
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = { amount = 1, unit = 'eur' } } }\n",
		      "customers.acme.budget.unit: must be \"usd\" or \"credits\"", "sk_b_1");
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = { amount = 1, period = 'week' } } }\n",
		      "customers.acme.budget.period: must be \"month\", \"day\" or \"total\"", "sk_b_1");
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = { amount = 1, warn_at = 1 } } }\n",
		      "customers.acme.budget.warn_at", "sk_b_1");
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = { amount = 1, warn_at = 0 } } }\n",
		      "customers.acme.budget.warn_at: must be a fraction above 0 and below 1", "sk_b_1");
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = { amount = 1, warn_at = 1.5 } } }\n",
		      "customers.acme.budget.warn_at: must be a fraction above 0 and below 1", "sk_b_1");
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = { amount = 1, warn_at = 'half' } } }\n",
		      "customers.acme.budget.warn_at: must be a number", "sk_b_1");
	check_refused("customers = { acme = { api_key = 'sk_b_1', budget = { amount = 1, limit = 2 } } }\n",
		      "unknown key 'customers.acme.budget.limit'", "sk_b_1");
	struct config *c = config_load(write_conf(
		"customers = { acme = { api_key = 'sk_b_1', budget = { amount = 25, unit = 'credits', period = 'day' } },\n"
		"  globex = { api_key = 'sk_b_2' }, initech = { api_key = 'sk_b_3', budget = { amount = 2, warn_at = 0.75 } } }\n"),
		err, sizeof err);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "    %s\n", err);
		return;
	}
	CHECK(c->customers[0].budget_amount == 25);
	CHECK_STR_EQ(c->customers[0].budget_unit, "credits");
	CHECK_STR_EQ(c->customers[0].budget_period, "day");
	CHECK(c->customers[1].budget_amount == 0);
	CHECK(c->customers[0].budget_warn_at == 0); /* no warning unless set */
	CHECK(c->customers[2].budget_warn_at == 0.75);
	config_free(c);
}

/* workers = "auto": one loop on SQLite, CONFIG_PG_WORKERS on PostgreSQL;
 * jobs.due_check_s, the due timer's safety net. */
static void test_workers_auto(void)
{
	char err[512];
	struct config *c = config_load(write_conf("workers = 'auto'\n"), err, sizeof err);
	CHECK(c != NULL);
	if (c) {
		CHECK_EQ_INT(c->workers, 1);
		CHECK(c->due_check_s == 1);
	}
	config_free(c);
	c = config_load(write_conf("store = 'postgresql://gr@127.0.0.1/x'\nworkers = 'auto'\n"
				   "jobs = { due_check_s = 3600 }\n"), err, sizeof err);
	CHECK(c != NULL);
	if (c) {
		CHECK_EQ_INT(c->workers, CONFIG_PG_WORKERS);
		CHECK(c->due_check_s == 3600);
	}
	config_free(c);
	check_refused("workers = 'many'\n", "workers: must be an integer", NULL);
	check_refused("jobs = { due_check_s = 0 }\n", "jobs.due_check_s", NULL);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_defaults();
	test_full();
	test_secrets_and_proxies();
	test_errors();
	test_server_secret_env();
	test_scrub_set();
	test_key_pool();
	test_budget();
	test_workers_auto();
	test_log_keys();
	unlink(conf_path);
	rmdir(tmpdir);
	return check_done();
}
