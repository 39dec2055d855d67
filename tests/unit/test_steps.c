/*
 * test_steps.c: steps_callbacks_refused (engine_callbacks_refused in
 * engine.h), the decision that refuses a job at submit when its provider
 * would refuse genrelay's callback URL (core/steps.c).
 * Addresses here are only parsed, never connected to.
 */
#include "engine_int.h"
#include "script.h"
#include "check.h"

#include <string.h>

static int refused(const char *url, int https, int pub, int callbacks, char *why, size_t n)
{
	struct script_provider_info info = { .configured = 1, .callbacks = callbacks,
					     .callback_https = https, .callback_public = pub };
	why[0] = '\0';
	return steps_callbacks_refused(url, "prov", &info, why, n);
}

int main(void)
{
	char why[600];
	/* No requirement: anything goes. */
	CHECK_EQ_INT(refused("http://127.0.0.1:8080", 0, 0, 1, why, sizeof why), 0);
	/* https required. */
	CHECK_EQ_INT(refused("http://gr.example.com", 1, 0, 1, why, sizeof why), 1);
	CHECK(strstr(why, "public_url") != NULL);
	CHECK(strstr(why, "providers.prov.callbacks = false") != NULL);
	CHECK_EQ_INT(refused("https://gr.example.com", 1, 0, 1, why, sizeof why), 0);
	CHECK_EQ_INT(refused("https://127.0.0.1:8443", 1, 0, 1, why, sizeof why), 0);
	/* public required: loopback, private, link-local and localhost refused. */
	static const char *const priv[] = {
		"https://127.0.0.1", "https://localhost:8443", "https://api.localhost", "https://10.1.2.3",
		"https://192.168.1.10", "https://172.16.0.1", "https://169.254.169.254", "https://[::1]",
		"https://[fd00::1]", "https://0x7f000001", "https://2130706433", NULL };
	for (const char *const *p = priv; *p; p++) {
		int r = refused(*p, 1, 1, 1, why, sizeof why);
		if (r != 1)
			fprintf(stderr, "    not refused: %s\n", *p);
		CHECK_EQ_INT(r, 1);
	}
	CHECK_EQ_INT(refused("https://gr.example.com", 1, 1, 1, why, sizeof why), 0);
	CHECK_EQ_INT(refused("http://gr.example.com", 1, 1, 1, why, sizeof why), 1);
	CHECK_EQ_INT(refused("http://gr.example.com", 0, 1, 1, why, sizeof why), 0);
	CHECK_EQ_INT(refused("http://10.0.0.1", 0, 1, 1, why, sizeof why), 1);
	/* Poll only (callbacks = false): never refused, no URL is sent. */
	CHECK_EQ_INT(refused("http://127.0.0.1:8080", 1, 1, 0, why, sizeof why), 0);
	/* No public_url at all. */
	CHECK_EQ_INT(refused(NULL, 1, 0, 1, why, sizeof why), 1);
	return check_done();
}
