/*
 * test_modelid.c: the model id grammar (core/modelid.c).
 */
#include "modelid.h"
#include "check.h"

#include <string.h>

static void ok(const char *id, const char *provider, const char *model, const char *version)
{
	struct modelid m;
	char why[128] = "";
	int rc = modelid_parse(id, &m, why, sizeof why);
	CHECK_EQ_INT(rc, 0);
	if (rc != 0) {
		fprintf(stderr, "    %s: %s\n", id, why);
		return;
	}
	CHECK_STR_EQ(m.provider, provider);
	CHECK_STR_EQ(m.model, model);
	if (version) {
		CHECK(m.version != NULL);
		if (m.version)
			CHECK_STR_EQ(m.version, version);
	} else {
		CHECK(m.version == NULL);
	}
}

static void bad(const char *id)
{
	struct modelid m;
	char why[128] = "";
	int rc = modelid_parse(id, &m, why, sizeof why);
	if (rc == 0)
		fprintf(stderr, "    accepted: '%s'\n", id);
	CHECK_EQ_INT(rc, -1);
	CHECK(why[0] != '\0');
}

int main(void)
{
	/* Plain ids, routed by the providers' patterns. */
	ok("fal-ai/flux/dev", "", "fal-ai/flux/dev", NULL);
	ok("images/text2img", "", "images/text2img", NULL);
	ok("a", "", "a", NULL);
	ok("v1.5_x-y", "", "v1.5_x-y", NULL);
	/* A provider prefix. */
	ok("fal:fal-ai/flux/dev", "fal", "fal-ai/flux/dev", NULL);
	ok("krea:image/bfl/flux-1-dev", "krea", "image/bfl/flux-1-dev", NULL);
	/* Replicate-style versions, with and without a prefix. */
	ok("replicate:owner/name:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
	   "replicate", "owner/name:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
	   "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa");
	ok("owner/name:v2", "", "owner/name:v2", "v2");
	ok("workflows/owner/app/x:1.0", "", "workflows/owner/app/x:1.0", "1.0");
	/* Text before the first ':' without a '/' is a provider prefix. */
	ok("name:v1", "name", "v1", NULL);
	ok("p:owner/name:v1", "p", "owner/name:v1", "v1");

	/* Refused: empty, dot and empty segments, unsafe characters. */
	bad("");
	bad(":");
	bad("fal:");
	bad(":fal-ai/flux");
	bad("fal-ai//flux");
	bad("/fal-ai/flux");
	bad("fal-ai/flux/");
	bad("fal-ai/../secrets");
	bad("fal:../x");
	bad("./x");
	bad("a/./b");
	bad("..");
	bad("owner/name:");
	bad("owner/name:v1:v2");
	bad("owner/name:v1/x");
	bad("owner/name:..");
	bad("a:b:c:d");
	bad("fal-ai/flux%2f..");
	bad("fal-ai/flux?x=1");
	bad("fal-ai/flux#x");
	bad("fal-ai\\flux");
	bad("fal ai/flux");
	bad("fal-ai/fl\xc3\xbcx");
	bad("bad-prov:model"); /* provider names are letters, digits and '_' */
	bad("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:x"); /* 65 bytes */
	{
		char longid[MODELID_MAX + 2];
		memset(longid, 'a', sizeof longid - 1);
		longid[sizeof longid - 1] = '\0';
		bad(longid);
		longid[MODELID_MAX] = '\0';
		ok(longid, "", longid, NULL);
	}
	return check_done();
}
