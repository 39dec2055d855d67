/*
 * test_webhook_verify.c: the receiving side of Standard Webhooks
 * (core/webhook_verify.c), on the specification's published example.
 */
#include "webhook_verify.h"
#include "check.h"

#include <string.h>

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define TS "1614265330"
#define BODY "{\"test\": 2432232314}"
#define SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static const int64_t now = 1614265330;

static int verify(const char *secret, const char *id, const char *ts, const char *sig,
		  const char *body, int64_t at, char *why)
{
	return webhook_verify(secret, id, ts, sig, body, strlen(body), at,
			      WEBHOOK_VERIFY_TOLERANCE_S, why, 256);
}

int main(void)
{
	char why[256];
	CHECK_EQ_INT(verify(SECRET, ID, TS, SIG, BODY, now, why), 1);
	/* One of several signatures (a key rotation) is enough. */
	CHECK_EQ_INT(verify(SECRET, ID, TS, "v1,AAAA " SIG " v2,x", BODY, now, why), 1);
	/* Within the tolerance either way. */
	CHECK_EQ_INT(verify(SECRET, ID, TS, SIG, BODY, now + 300, why), 1);
	CHECK_EQ_INT(verify(SECRET, ID, TS, SIG, BODY, now - 300, why), 1);

	/* Tampered body, id, timestamp, signature; another secret. */
	CHECK_EQ_INT(verify(SECRET, ID, TS, SIG, "{\"test\": 2432232315}", now, why), 0);
	CHECK_STR_EQ(why, "no v1 signature matches");
	CHECK_EQ_INT(verify(SECRET, "msg_other", TS, SIG, BODY, now, why), 0);
	CHECK_EQ_INT(verify(SECRET, ID, "1614265331", SIG, BODY, now, why), 0);
	CHECK_EQ_INT(verify(SECRET, ID, TS, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=", BODY, now, why), 0);
	CHECK_EQ_INT(verify(SECRET, ID, TS, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY, now, why), 0);
	CHECK_EQ_INT(verify("whsec_Z2xvYmV4LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=", ID, TS, SIG, BODY, now, why), 0);
	/* A prefix of the signature is not the signature. */
	CHECK_EQ_INT(verify(SECRET, ID, TS, "v1,g0hM9SsE", BODY, now, why), 0);

	/* Stale and future timestamps, malformed ones, missing headers. */
	CHECK_EQ_INT(verify(SECRET, ID, TS, SIG, BODY, now + 301, why), 0);
	CHECK(strstr(why, "tolerance") != NULL);
	CHECK_EQ_INT(verify(SECRET, ID, TS, SIG, BODY, now - 301, why), 0);
	CHECK_EQ_INT(verify(SECRET, ID, "16142653x0", SIG, BODY, now, why), 0);
	CHECK_EQ_INT(verify(SECRET, ID, "-1614265330", SIG, BODY, now, why), 0);
	CHECK_EQ_INT(verify(SECRET, ID, "99999999999999999999", SIG, BODY, now, why), 0);
	CHECK_EQ_INT(verify(SECRET, NULL, TS, SIG, BODY, now, why), 0);
	CHECK_EQ_INT(verify(SECRET, ID, NULL, SIG, BODY, now, why), 0);
	CHECK_EQ_INT(verify(SECRET, ID, TS, NULL, BODY, now, why), 0);
	CHECK_EQ_INT(verify(SECRET, ID, TS, "", BODY, now, why), 0);
	CHECK(strstr(why, "missing") != NULL);
	/* A secret that does not decode is refused, never a crash; it is never echoed. */
	CHECK_EQ_INT(verify("whsec_!!!!", ID, TS, SIG, BODY, now, why), 0);
	CHECK(strstr(why, "!!!!") == NULL);
	return check_done();
}
